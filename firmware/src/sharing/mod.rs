//! Power sharing: a leader and its followers split a supply tree's current.
//!
//! - [`alloc`]: the allocation arithmetic (max-min fair over a tree).
pub mod alloc;
