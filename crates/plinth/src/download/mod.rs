//! Getting bytes from the outside: which mirror serves an archive
//! ([`mirrors`]), HTTP and `file://` downloads with retries ([`http`]),
//! the sha256-addressed download cache they land in ([`cache`]), and pool
//! files by the sha256 a lock names ([`pool`]).
//!
//! Nothing here decides what to fetch or trusts what it fetched: the lock
//! stage checks indices against signed Release files, and the build checks
//! every `.deb` against the lock's sha256.

pub mod cache;
pub mod http;
pub mod mirrors;
pub mod pool;
