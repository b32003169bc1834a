//! Debian's formats, as plinth reads them: control-file syntax
//! ([`control`]), relationship fields ([`relation`]), version ordering
//! ([`version`]), `.deb` packages ([`deb`]), machine-readable copyright
//! files ([`copyright`]), changelogs ([`changelog`]), and the checked
//! names ([`name`]) of packages and pool files.
//!
//! Pure functions over bytes: nothing here touches the network or the
//! file system, so every parser can be fed hostile input in a unit test.

pub mod changelog;
pub mod control;
pub mod copyright;
pub mod deb;
pub mod name;
pub mod relation;
pub mod version;
