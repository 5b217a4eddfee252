//! A follower: joins the group with its key, applies the leader's grants,
//! reports its charging point, and falls back on its own when the leader
//! goes quiet.
//!
//! Owns the follower's side of the link (join handshake, replay window) and
//! the fallback rule: with no valid leader frame for `leader_timeout`, the
//! offer drops to `min(last grant, fallback)` and stays there until the
//! leader grants again. After a reboot the last grant is 0, so a rebooted
//! follower starts from 0 and asks. Does not drive the charging point:
//! [`Follower::poll_allocation`] says what to give it.

use heapless::Deque;

use super::config::{GroupConfig, MAX_NODES, MAX_STATIONS};
use super::frame::{self, Deframed, Deframer, Header, Message, PeerStatus, MAX_FRAME};
use super::leader::{to_peer_status, LinkStats};
use crate::charge_point::Status;
use crate::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Link {
    Unjoined {
        nonce: Option<u64>,
        next_join: Instant,
    },
    Joined {
        leader_boot: u32,
        last_seq: u32,
        last_heard: Instant,
    },
}

/// A follower. See the module documentation.
#[derive(Debug)]
pub struct Follower<const S: usize = MAX_STATIONS, const N: usize = MAX_NODES> {
    cfg: GroupConfig<S, N>,
    me: usize,
    boot: u32,
    seq: u32,
    /// Join attempts since boot: each gets its own nonce, even when
    /// several are queued before the link sends the first.
    joins: u32,
    link: Link,
    grant_da: u16,
    offer_da: u16,
    fallen_back: bool,
    local: PeerStatus,
    status_due: Option<u32>,
    tx: Deque<Message, 8>,
    deframer: Deframer,
    pending_alloc: Option<u16>,
    stats: LinkStats,
}

/// Why a follower cannot be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FollowerError {
    NotInGroup { id: u8 },
    IsTheLeader { id: u8 },
}

impl core::fmt::Display for FollowerError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::NotInGroup { id } => {
                write!(f, "station {id} is not in the group's configuration")
            }
            Self::IsTheLeader { id } => {
                write!(f, "station {id} is the group's leader, not a follower")
            }
        }
    }
}

impl core::error::Error for FollowerError {}

impl<const S: usize, const N: usize> Follower<S, N> {
    /// `boot` must differ at every boot (hardware RNG or boot counter).
    pub fn new(
        cfg: GroupConfig<S, N>,
        id: u8,
        boot: u32,
        now: Instant,
    ) -> Result<Self, FollowerError> {
        let me = cfg.index_of(id).ok_or(FollowerError::NotInGroup { id })?;
        if id == cfg.leader {
            return Err(FollowerError::IsTheLeader { id });
        }
        Ok(Self {
            cfg,
            me,
            boot,
            seq: 0,
            joins: 0,
            link: Link::Unjoined {
                nonce: None,
                next_join: now,
            },
            grant_da: 0,
            offer_da: 0,
            fallen_back: false,
            local: PeerStatus::default(),
            status_due: None,
            tx: Deque::new(),
            deframer: Deframer::new(),
            pending_alloc: Some(0),
            stats: LinkStats::default(),
        })
    }

    #[must_use]
    pub fn id(&self) -> u8 {
        self.cfg.stations[self.me].id
    }

    /// The group configuration it runs on.
    #[must_use]
    pub fn config(&self) -> &GroupConfig<S, N> {
        &self.cfg
    }

    #[must_use]
    pub fn joined(&self) -> bool {
        matches!(self.link, Link::Joined { .. })
    }

    #[must_use]
    pub fn fallen_back(&self) -> bool {
        self.fallen_back
    }

    #[must_use]
    pub fn offer_da(&self) -> u16 {
        self.offer_da
    }

    #[must_use]
    pub fn stats(&self) -> LinkStats {
        self.stats
    }

    /// This station's charging point status.
    pub fn handle_local_status(&mut self, status: &Status) {
        self.local = to_peer_status(status, self.grant_da);
    }

    pub fn handle_rx(&mut self, now: Instant, bytes: &[u8]) {
        for &b in bytes {
            match self.deframer.push(&self.cfg.key, b) {
                Some(Deframed::Frame(h, m)) => self.handle_frame(now, h, m),
                Some(Deframed::Error(e)) => self.stats.count(e),
                None => {}
            }
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        let t = self.cfg.timing;
        match self.link {
            Link::Joined { last_heard, .. } if now >= last_heard + t.leader_timeout => {
                // The leader is lost: fall back, and ask to join again.
                self.fallen_back = true;
                let fallback = self.cfg.stations[self.me].fallback_da;
                self.set_offer(self.grant_da.min(fallback));
                self.link = Link::Unjoined {
                    nonce: None,
                    next_join: now,
                };
                self.join(now);
            }
            Link::Unjoined { next_join, .. } if now >= next_join => self.join(now),
            _ => {}
        }
    }

    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        Some(match self.link {
            Link::Joined { last_heard, .. } => last_heard + self.cfg.timing.leader_timeout,
            Link::Unjoined { next_join, .. } => next_join,
        })
    }

    /// The next frame to send, encoded into `buf`.
    #[must_use]
    pub fn poll_transmit(&mut self, buf: &mut [u8; MAX_FRAME]) -> Option<usize> {
        let msg = match self.status_due.take() {
            Some(grant_seq) => {
                let mut st = self.local;
                st.grant_seq = grant_seq;
                st.granted_da = self.grant_da;
                Message::Status(st)
            }
            None => self.tx.pop_front()?,
        };
        self.seq = self.seq.wrapping_add(1);
        let h = Header {
            group: self.cfg.group,
            sender: self.id(),
            dest: self.cfg.leader,
            boot: self.boot,
            seq: self.seq,
        };
        Some(frame::encode(&self.cfg.key, &h, &msg, buf))
    }

    /// A new current limit for this station's charging point.
    #[must_use]
    pub fn poll_allocation(&mut self) -> Option<u16> {
        self.pending_alloc.take()
    }

    fn join(&mut self, now: Instant) {
        // Not the frame's sequence number: that moves only when a frame is
        // sent, so two joins queued behind a busy transmitter would share a
        // nonce, and the leader's challenge to the first (which the second
        // voids) would pass for the answer to the second.
        self.joins = self.joins.wrapping_add(1);
        let nonce = (u64::from(self.boot) << 32) | u64::from(self.joins);
        let _ = self.tx.push_back(Message::Join { nonce });
        self.link = Link::Unjoined {
            nonce: Some(nonce),
            next_join: now + self.cfg.timing.join_interval,
        };
    }

    fn set_offer(&mut self, da: u16) {
        let da = if self.cfg.enabled { da } else { 0 };
        if da != self.offer_da {
            self.offer_da = da;
            self.pending_alloc = Some(da);
        }
    }

    fn handle_frame(&mut self, now: Instant, h: Header, m: Message) {
        if h.group != self.cfg.group {
            self.stats.foreign += 1;
            return;
        }
        if h.dest != self.id() {
            return;
        }
        if h.sender != self.cfg.leader {
            self.stats.foreign += 1;
            return;
        }
        match (m, self.link) {
            (
                Message::Challenge { echo, nonce },
                Link::Unjoined {
                    nonce: Some(mine), ..
                },
            ) if echo == mine => {
                self.link = Link::Joined {
                    leader_boot: h.boot,
                    last_seq: h.seq,
                    last_heard: now,
                };
                let _ = self.tx.push_back(Message::Confirm { echo: nonce });
            }
            (
                Message::Grant { grant_da },
                Link::Joined {
                    leader_boot,
                    last_seq,
                    ..
                },
            ) if h.boot == leader_boot && h.seq > last_seq => {
                self.link = Link::Joined {
                    leader_boot,
                    last_seq: h.seq,
                    last_heard: now,
                };
                let cap = self.cfg.stations[self.me].cap_da();
                self.grant_da = grant_da.min(cap);
                self.fallen_back = false;
                self.set_offer(self.grant_da);
                self.status_due = Some(h.seq);
            }
            _ => self.stats.replays += 1,
        }
    }
}
