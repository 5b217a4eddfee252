//! Allocation over a supply tree: max-min fair ("water-filling") with the
//! 6 A minimum, per-phase node limits, station caps, priorities and weights.
//!
//! Owns the arithmetic of who gets how much. Does not know about links,
//! timers or make-before-break: [`super::leader`] turns these targets into
//! grants safely. Works on caller-owned slices, so it runs without a heap on
//! a station (fixed arrays) and on 10,000 stations in a benchmark (vectors).
//!
//! The algorithm, for each priority class from the highest down:
//! 1. **Admission.** Stations are taken in `rank` order and admitted if 6 A
//!    (or their `start_da`) fits under every node of their path, on every
//!    phase they load. The rest get 0: a station gets at least 6 A or nothing.
//! 2. **Water-filling of the rest.** Above its 6 A, every admitted station
//!    rises at a rate equal to its weight until it meets its cap or a node of
//!    its path saturates. Computed exactly, bottom-up: for each node the level
//!    at which it saturates is solved from the sorted levels below it, so the
//!    cost is O(n log n x depth), not one step per 0.1 A.
//! 3. **Rounding.** Results are rounded down to 0.1 A, then one pass hands
//!    the remainder out 0.1 A at a time where it fits.
//!
//! All results respect every node limit on every phase; this is checked by
//! property tests and, independently, by the harness's own oracle.
//! Nothing here panics: indices out of range are reported as errors.

/// 6 A: a station gets at least this much or nothing.
pub const MIN_DA: u16 = 60;

/// Shares are solved in deciamps x SCALE. With 2^16, a station's level
/// (at most 65,535 dA x SCALE) fits in 32 bits, so a node's stations sort
/// as packed `level << 32 | index` words.
const SCALE: u64 = 1 << 16;
const INDEX: u64 = 0xFFFF_FFFF;
const NONE: u32 = u32::MAX;

/// One node of the supply tree as the allocator sees it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NodeSlot {
    /// Parent node index, `None` for a root.
    pub parent: Option<u16>,
    /// What may flow through this node on each phase, in deciamps.
    pub limit_da: [u32; 3],
    depth: u16,
    first_child: u32,
    next_sibling: u32,
    dfs_in: u32,
    dfs_out: u32,
    /// Current through this node per phase, in deciamps x SCALE.
    used: [u64; 3],
    range: (u32, u32),
    /// Filling: weight still rising, room left at level `l0`, filled.
    w: [u64; 3],
    r: [u64; 3],
    l0: [u64; 3],
    full: [bool; 3],
}

impl NodeSlot {
    #[must_use]
    pub fn new(parent: Option<u16>, limit_da: [u32; 3]) -> Self {
        Self {
            parent,
            limit_da,
            ..Self::default()
        }
    }
}

/// What one station asks for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Demand {
    /// The node the station hangs from.
    pub node: u16,
    /// Which grid phases the station loads (after its rotation).
    pub phases: [bool; 3],
    /// The most it may get (nameplate, own breaker, what its car draws);
    /// 0 when it does not ask.
    pub cap_da: u16,
    /// Relative share above 6 A within a priority class (1 = normal).
    pub weight: u8,
    /// Higher classes are served first.
    pub priority: u8,
    /// Admission order within a class: lower goes first (rotation sets it).
    pub rank: u32,
    /// Room needed to be admitted, at least 6 A (more to resume with hysteresis).
    pub start_da: u16,
    /// A fixed amount that is not up for allocation (a silent peer's
    /// reservation); when non-zero the station takes exactly this.
    pub fixed_da: u16,
}

/// One station's slot: its demand in, its allocation out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StationSlot {
    pub demand: Demand,
    /// The result, in deciamps.
    pub alloc_da: u16,
    tau: u64,
    frac: u64,
    key: u32,
    done: bool,
}

impl StationSlot {
    #[must_use]
    pub fn new(demand: Demand) -> Self {
        Self {
            demand,
            ..Self::default()
        }
    }
}

/// Bad input to [`allocate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AllocError {
    /// A station names a node that does not exist.
    UnknownNode { station: u32, node: u16 },
    /// A node names a parent that does not exist.
    UnknownParent { node: u16, parent: u16 },
    /// Following parents from this node comes back to it.
    Cycle { node: u16 },
    /// The scratch space holds fewer stations or nodes than given.
    ScratchTooShort { needed: usize, got: usize },
}

impl core::fmt::Display for AllocError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            Self::UnknownNode { station, node } => {
                write!(f, "station {station} hangs from unknown node {node}")
            }
            Self::UnknownParent { node, parent } => {
                write!(f, "node {node} has unknown parent {parent}")
            }
            Self::Cycle { node } => write!(f, "node {node} is its own ancestor"),
            Self::ScratchTooShort { needed, got } => {
                write!(f, "scratch space holds {got} entries, needs {needed}")
            }
        }
    }
}

impl core::error::Error for AllocError {}

/// Depth of every node, checking parents and cycles. Depth 0 is a root.
pub fn check_tree(nodes: &mut [NodeSlot]) -> Result<(), AllocError> {
    let n = nodes.len();
    for i in 0..n {
        let mut depth = 0u16;
        let mut cur = i;
        while let Some(p) = nodes[cur].parent {
            let p = usize::from(p);
            if p >= n {
                return Err(AllocError::UnknownParent {
                    node: to_u16(cur),
                    parent: to_u16(p),
                });
            }
            depth += 1;
            if usize::from(depth) > n {
                return Err(AllocError::Cycle { node: to_u16(i) });
            }
            cur = p;
        }
        nodes[i].depth = depth;
    }
    Ok(())
}

fn to_u16(i: usize) -> u16 {
    u16::try_from(i).unwrap_or(u16::MAX)
}

fn to_u32(i: usize) -> u32 {
    u32::try_from(i).unwrap_or(u32::MAX)
}

/// Caller-owned scratch space for [`allocate`]: three words per station
/// (its depth-first position, its rank, its cap level) and three per node
/// (a heap of the nodes' phase constraints). Sized by the caller, so a
/// station image holds only what its group needs.
pub struct Scratch<'a> {
    pub per_station: &'a mut [[u64; 3]],
    pub per_node: &'a mut [[u64; 3]],
}

/// Scratch space of fixed size, for a caller that holds it (the leader).
#[derive(Debug, Clone)]
pub struct ScratchBuf<const S: usize, const N: usize> {
    per_station: [[u64; 3]; S],
    per_node: [[u64; 3]; N],
}

impl<const S: usize, const N: usize> ScratchBuf<S, N> {
    #[must_use]
    pub const fn new() -> Self {
        Self {
            per_station: [[0; 3]; S],
            per_node: [[0; 3]; N],
        }
    }

    pub fn as_scratch(&mut self) -> Scratch<'_> {
        Scratch {
            per_station: &mut self.per_station,
            per_node: &mut self.per_node,
        }
    }
}

impl<const S: usize, const N: usize> Default for ScratchBuf<S, N> {
    fn default() -> Self {
        Self::new()
    }
}

/// Allocate, with `scratch` of at least one entry per station and node.
/// On return every `alloc_da` holds the station's share.
pub fn allocate(
    nodes: &mut [NodeSlot],
    stations: &mut [StationSlot],
    scratch: Scratch<'_>,
) -> Result<(), AllocError> {
    let ns = stations.len();
    for (needed, got) in [
        (ns, scratch.per_station.len()),
        (nodes.len(), scratch.per_node.len()),
    ] {
        if got < needed {
            return Err(AllocError::ScratchTooShort { needed, got });
        }
    }
    let (order, rest) = scratch.per_station[..ns]
        .as_flattened_mut()
        .split_at_mut(ns);
    let (ranked, caps) = rest.split_at_mut(ns);
    let heap = scratch.per_node[..nodes.len()].as_flattened_mut();
    check_tree(nodes)?;
    for (i, s) in stations.iter().enumerate() {
        if usize::from(s.demand.node) >= nodes.len() {
            return Err(AllocError::UnknownNode {
                station: to_u32(i),
                node: s.demand.node,
            });
        }
    }
    number_nodes_depth_first(nodes);
    for n in nodes.iter_mut() {
        n.used = [0; 3];
    }
    for (i, s) in stations.iter_mut().enumerate() {
        s.alloc_da = 0;
        s.tau = 0;
        s.frac = 0;
        s.key = nodes[usize::from(s.demand.node)].dfs_in;
        ranked[i] = (u64::from(s.key) << 32) | i as u64;
    }
    // Depth-first order of stations, once: a node's subtree is one range.
    ranked.sort_unstable();
    for (o, &v) in order.iter_mut().zip(ranked.iter()) {
        *o = v & INDEX;
    }
    for n in nodes.iter_mut() {
        let lo = order.partition_point(|&i| stations[i as usize].key < n.dfs_in);
        let hi = order.partition_point(|&i| stations[i as usize].key < n.dfs_out);
        n.range = (to_u32(lo), to_u32(hi));
    }

    // Fixed reservations come off the top.
    for i in 0..ns {
        let d = stations[i].demand;
        if d.fixed_da > 0 {
            stations[i].alloc_da = d.fixed_da;
            charge_path(nodes, d.node, d.phases, u64::from(d.fixed_da));
        }
    }

    // Priority classes, highest first.
    let mut class = Some(u8::MAX);
    while let Some(prio) = next_class(stations, class) {
        let members = admit(nodes, stations, ranked, prio);
        fill(nodes, stations, order, caps, heap, prio);
        hand_out_rounding(nodes, stations, &ranked[..members], caps, prio);
        class = prio.checked_sub(1);
    }
    Ok(())
}

/// The highest priority at or below `at_most` that some asking station has.
fn next_class(stations: &[StationSlot], at_most: Option<u8>) -> Option<u8> {
    let at_most = at_most?;
    stations
        .iter()
        .filter(|s| {
            s.demand.fixed_da == 0 && s.demand.cap_da >= MIN_DA && s.demand.priority <= at_most
        })
        .map(|s| s.demand.priority)
        .max()
}

fn is_member(s: &StationSlot, prio: u8) -> bool {
    s.demand.fixed_da == 0 && s.demand.priority == prio && s.demand.cap_da >= MIN_DA
}

/// Add `amount` deciamps to every node on the path from `node` to its root.
fn charge_path(nodes: &mut [NodeSlot], node: u16, phases: [bool; 3], amount: u64) {
    charge_path_scaled(nodes, node, phases, amount * SCALE, false);
}

/// Add (or take back) `scaled` (deciamps x SCALE) along the path.
fn charge_path_scaled(
    nodes: &mut [NodeSlot],
    node: u16,
    phases: [bool; 3],
    scaled: u64,
    take_back: bool,
) {
    let mut cur = Some(node);
    while let Some(c) = cur {
        let n = &mut nodes[usize::from(c)];
        for p in 0..3 {
            if phases[p] {
                n.used[p] = if take_back {
                    n.used[p].saturating_sub(scaled)
                } else {
                    n.used[p] + scaled
                };
            }
        }
        cur = n.parent;
    }
}

/// Whether `amount` more fits on every node of the path.
fn fits_path(nodes: &[NodeSlot], node: u16, phases: [bool; 3], amount: u64) -> bool {
    let mut cur = Some(node);
    while let Some(c) = cur {
        let n = &nodes[usize::from(c)];
        for p in 0..3 {
            if phases[p] && n.used[p] + amount * SCALE > u64::from(n.limit_da[p]) * SCALE {
                return false;
            }
        }
        cur = n.parent;
    }
    true
}

/// Admit the class's stations in rank order while 6 A (or their start
/// margin) fits; leaves the class's members in rank order in `ranked` and
/// returns how many there are.
fn admit(
    nodes: &mut [NodeSlot],
    stations: &mut [StationSlot],
    ranked: &mut [u64],
    prio: u8,
) -> usize {
    let mut m = 0;
    for (i, s) in stations.iter().enumerate() {
        if is_member(s, prio) {
            ranked[m] = (u64::from(s.demand.rank) << 32) | i as u64;
            m += 1;
        }
    }
    ranked[..m].sort_unstable();
    for &v in ranked[..m].iter() {
        let s = &mut stations[(v & INDEX) as usize];
        let d = s.demand;
        let start = u64::from(d.start_da.max(MIN_DA).min(d.cap_da));
        if fits_path(nodes, d.node, d.phases, start) {
            // Admitted: 6 A now, and up to its cap above that in `fill`.
            s.alloc_da = MIN_DA;
            charge_path(nodes, d.node, d.phases, u64::from(MIN_DA));
        }
    }
    m
}

/// Progressive filling as a discrete-event computation: a common level L
/// rises; the next event is either a station reaching its cap or a (node,
/// phase) constraint filling up, whichever comes at the lower level. A
/// constraint's fill level is `l0 + r / w` (remaining room over the weight
/// still rising under it); freezing a station under it only raises that
/// level, so stale heap entries are recomputed when they surface. Each
/// constraint fills once, and then freezes the stations of its node's range
/// that load its phase: O((n * depth + m) log m) in all.
fn fill(
    nodes: &mut [NodeSlot],
    stations: &mut [StationSlot],
    order: &mut [u64],
    caps: &mut [u64],
    heap: &mut [u64],
    prio: u8,
) {
    let ns = stations.len();

    // Members rise; everyone else is done. `tau` holds each member's cap
    // level, then its final level.
    let mut n_caps = 0;
    for n in nodes.iter_mut() {
        n.w = [0; 3];
        n.l0 = [0; 3];
        n.full = [false; 3];
        for p in 0..3 {
            n.r[p] = (u64::from(n.limit_da[p]) * SCALE).saturating_sub(n.used[p]);
        }
    }
    for i in 0..ns {
        let s = &mut stations[i];
        s.done = !(is_member(s, prio) && s.alloc_da == MIN_DA);
        if s.done {
            continue;
        }
        let w = u64::from(s.demand.weight.max(1));
        s.tau = (u64::from(s.demand.cap_da - s.alloc_da) * SCALE).saturating_sub(s.frac) / w;
        caps[n_caps] = (s.tau << 32) | i as u64;
        n_caps += 1;
        let (node, phases) = (s.demand.node, s.demand.phases);
        let mut cur = Some(node);
        while let Some(c) = cur {
            let n = &mut nodes[usize::from(c)];
            for p in 0..3 {
                if phases[p] {
                    n.w[p] += w;
                }
            }
            cur = n.parent;
        }
    }
    let caps = &mut caps[..n_caps];
    caps.sort_unstable();
    let mut h = MinHeap { data: heap, len: 0 };
    for (ni, n) in nodes.iter().enumerate() {
        for p in 0..3 {
            if let Some(level) = n.r[p].checked_div(n.w[p]) {
                h.push((level.min(INDEX) << 32) | (ni * 3 + p) as u64);
            }
        }
    }

    let mut next_cap = 0;
    loop {
        let cap_at = caps.get(next_cap).map(|&v| v >> 32);
        let con_at = h.peek().map(|v| v >> 32);
        match (cap_at, con_at) {
            (None, None) => break,
            (Some(c), con) if con.is_none_or(|k| c <= k) => {
                let i = (caps[next_cap] & INDEX) as usize;
                next_cap += 1;
                if !stations[i].done {
                    freeze(nodes, stations, i, c);
                }
            }
            _ => {
                let Some(v) = h.pop() else { break };
                let (key, id) = (v >> 32, (v & INDEX) as usize);
                let (ni, p) = (id / 3, id % 3);
                let n = &nodes[ni];
                if n.full[p] || n.w[p] == 0 {
                    continue;
                }
                // Levels at or above 2^32 are beyond every cap: they sort last.
                let at = (n.l0[p] + n.r[p] / n.w[p]).min(INDEX);
                if at > key {
                    h.push((at << 32) | id as u64);
                    continue;
                }
                nodes[ni].full[p] = true;
                let (lo, hi) = nodes[ni].range;
                for k in lo as usize..hi as usize {
                    let i = order[k] as usize;
                    if !stations[i].done && stations[i].demand.phases[p] {
                        freeze(nodes, stations, i, key);
                    }
                }
            }
        }
    }

    // Shares stay exact (scaled) until here.
    for i in 0..ns {
        let s = stations[i];
        if !(is_member(&s, prio) && s.alloc_da == MIN_DA) {
            continue;
        }
        let extra = u64::from(s.demand.weight.max(1)) * s.tau;
        stations[i].frac += extra;
        charge_path_scaled(nodes, s.demand.node, s.demand.phases, extra, false);
    }

    // Round down to 0.1 A and give the fractions back to the nodes.
    for s in stations.iter_mut() {
        if s.frac == 0 {
            continue;
        }
        let whole = s.frac / SCALE;
        let rest = s.frac - whole * SCALE;
        s.alloc_da = s
            .alloc_da
            .saturating_add(u16::try_from(whole).unwrap_or(0))
            .min(s.demand.cap_da);
        s.frac = 0;
        charge_path_scaled(nodes, s.demand.node, s.demand.phases, rest, true);
    }
}

/// Rounding left less than 0.1 A per station on each node. Hand it out 0.1 A
/// per station per round, those with least first (then by rank), until
/// nothing more fits. Room only shrinks, so a station that does not fit once
/// never fits again and leaves the list; everyone left gets 0.1 A each
/// round, so the order holds without sorting again. `ranked` holds the
/// class's members in rank order.
fn hand_out_rounding(
    nodes: &mut [NodeSlot],
    stations: &mut [StationSlot],
    ranked: &[u64],
    buf: &mut [u64],
    prio: u8,
) {
    let m = ranked.len();
    for (pos, &v) in ranked.iter().enumerate() {
        let s = &stations[(v & INDEX) as usize];
        let share = u64::from(s.alloc_da / u16::from(s.demand.weight.max(1)));
        buf[pos] = (share << 32) | pos as u64;
    }
    let live_buf = &mut buf[..m];
    live_buf.sort_unstable();
    let mut live = m;
    while live > 0 {
        let mut kept = 0;
        for k in 0..live {
            let i = (ranked[(live_buf[k] & INDEX) as usize] & INDEX) as usize;
            let s = stations[i];
            if is_member(&s, prio)
                && s.alloc_da >= MIN_DA
                && s.alloc_da < s.demand.cap_da
                && fits_path(nodes, s.demand.node, s.demand.phases, 1)
            {
                stations[i].alloc_da += 1;
                charge_path(nodes, s.demand.node, s.demand.phases, 1);
                live_buf[kept] = live_buf[k];
                kept += 1;
            }
        }
        live = kept;
    }
}

/// Freeze station `i` at `level`: it stops rising, and every constraint on
/// its path loses its weight (after catching up with the level).
fn freeze(nodes: &mut [NodeSlot], stations: &mut [StationSlot], i: usize, level: u64) {
    let s = &mut stations[i];
    s.done = true;
    // `tau` held the station's cap level: never beyond it.
    s.tau = level.min(s.tau);
    let w = u64::from(s.demand.weight.max(1));
    let (node, phases) = (s.demand.node, s.demand.phases);
    let mut cur = Some(node);
    while let Some(c) = cur {
        let n = &mut nodes[usize::from(c)];
        for p in 0..3 {
            if phases[p] {
                let risen = level.saturating_sub(n.l0[p]);
                n.r[p] = n.r[p].saturating_sub(n.w[p] * risen);
                n.l0[p] = level;
                n.w[p] -= w;
            }
        }
        cur = n.parent;
    }
}

/// A binary min-heap on caller-provided space (no allocation).
struct MinHeap<'a> {
    data: &'a mut [u64],
    len: usize,
}

impl MinHeap<'_> {
    fn peek(&self) -> Option<u64> {
        (self.len > 0).then(|| self.data[0])
    }

    fn push(&mut self, v: u64) {
        if self.len == self.data.len() {
            return; // sized for one entry per constraint; cannot happen
        }
        let mut k = self.len;
        self.data[k] = v;
        self.len += 1;
        while k > 0 {
            let parent = (k - 1) / 2;
            if self.data[parent] <= self.data[k] {
                break;
            }
            self.data.swap(parent, k);
            k = parent;
        }
    }

    fn pop(&mut self) -> Option<u64> {
        if self.len == 0 {
            return None;
        }
        let top = self.data[0];
        self.len -= 1;
        self.data[0] = self.data[self.len];
        let mut k = 0;
        loop {
            let (l, r) = (2 * k + 1, 2 * k + 2);
            let mut m = k;
            if l < self.len && self.data[l] < self.data[m] {
                m = l;
            }
            if r < self.len && self.data[r] < self.data[m] {
                m = r;
            }
            if m == k {
                break;
            }
            self.data.swap(m, k);
            k = m;
        }
        Some(top)
    }
}

/// Number nodes in depth-first order, so that a node's subtree is the key
/// range `dfs_in..dfs_out`.
fn number_nodes_depth_first(nodes: &mut [NodeSlot]) {
    for n in nodes.iter_mut() {
        n.first_child = NONE;
        n.next_sibling = NONE;
    }
    // Children lists, built in reverse so siblings keep their index order.
    for i in (0..nodes.len()).rev() {
        if let Some(p) = nodes[i].parent {
            let p = usize::from(p);
            nodes[i].next_sibling = nodes[p].first_child;
            nodes[p].first_child = to_u32(i);
        }
    }
    let mut counter = 0u32;
    for root in 0..nodes.len() {
        if nodes[root].parent.is_some() {
            continue;
        }
        // Iterative walk without a stack: go down first children, then
        // siblings, then back up through parents.
        let mut cur = root;
        'walk: loop {
            nodes[cur].dfs_in = counter;
            counter += 1;
            if nodes[cur].first_child != NONE {
                cur = nodes[cur].first_child as usize;
                continue;
            }
            loop {
                nodes[cur].dfs_out = counter;
                if cur == root {
                    break 'walk;
                }
                if nodes[cur].next_sibling != NONE {
                    cur = nodes[cur].next_sibling as usize;
                    continue 'walk;
                }
                match nodes[cur].parent {
                    Some(p) => cur = usize::from(p),
                    None => break 'walk,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
