//! Small helpers every stage shares, each with exactly one owner here:
//! atomic file writes and the clean-up of leftover temporaries, hex and
//! digest strings, byte sizes, RFC 3339 and RFC 2822 time, the retry
//! policy for network calls, and one-line error text.
//!
//! Nothing here knows about Debian, images or registries; every other
//! module may use it, and it uses none of them.

pub mod digest;
pub mod fs;
pub mod retry;
pub mod size;
pub mod text;
pub mod time;
