//! Offline fixtures for plinth's tests: keys, packages, a signed archive
//! and a loopback mirror.
//!
//! Everything here is generated on the spot, so tests never touch the
//! network and never depend on plinth's own code (the fixtures are made
//! independently of what they test). Output is deterministic wherever the
//! formats allow: fixed mtimes, tar members in the order given, gzip and
//! xz without timestamps. Only keys and signatures differ between runs.
//!
//! - [`keys`]: [`SigningKey::rsa`] / [`SigningKey::ed25519`] /
//!   [`SigningKey::expired`] make Debian-shaped archive keys (a
//!   certification-only primary key and a signing subkey);
//!   [`clearsign`] / [`clearsign_at`] make `InRelease` files.
//! - [`deb`]: [`DebBuilder`] makes `.deb` files that `dpkg-deb` accepts,
//!   with any control fields, files, links and owners, any of the four
//!   [`Compression`]s, and [`RawEntry`] members for hostile input.
//! - [`repo`]: [`Archive`] writes `pool/` and `dists/<suite>/` with
//!   `Release`, `InRelease`, `Release.gpg`, `Packages`, `Packages.xz` and
//!   `by-hash/` copies, plus fault helpers that break them afterwards.
//! - [`server`]: [`Server`] serves a directory over HTTP or HTTPS on
//!   `127.0.0.1`, records requests and injects error statuses, stalls,
//!   short bodies and endless ones.
//! - [`registry`]: [`registry::Registry`] runs Debian's `docker-registry`
//!   on loopback (optionally with htpasswd, optionally over TLS), stops and
//!   restarts it.
//! - [`tls`]: a test PKI made on the spot ([`tls::TestCa`]): CA and server
//!   certificates for the TLS servers above.
//! - [`proxy`]: [`proxy::ConnectProxy`], a loopback CONNECT proxy that
//!   records what it tunnels.
//! - [`front`]: [`front::StorageFront`], a registry front that redirects
//!   blob reads and hands out upload sessions on a second listener, as
//!   registries backed by object storage do.
//! - [`compress`]: the deterministic xz/zstd/gzip settings all of the
//!   above use.
//!
//! The crate's own tests check the output against independent readers:
//! `dpkg-deb` for packages, Sequoia's verifier and `gpgv` for signatures,
//! and `apt-get update` against the served archive (each host tool is
//! skipped when missing).
//!
//! All helpers panic on failure rather than return errors: they only run
//! inside tests, where a panic with a message is the most useful outcome.
//!
//! ```
//! use plinth_testkit::{Archive, DebBuilder, Server, SigningKey, SuiteSpec};
//!
//! let key = SigningKey::ed25519("Test Archive <archive@test.invalid>");
//! let tmp = tempfile::tempdir().unwrap();
//! let mut debian = Archive::new(tmp.path().join("debian"));
//! debian.suite(SuiteSpec::new("trixie").signed_by(&[&key]));
//! let libc = DebBuilder::new("libc6", "2.41-12", "amd64")
//!     .field("Source", "glibc")
//!     .file("/usr/lib/x86_64-linux-gnu/libc.so.6", 0o755, b"\x7fELF")
//!     .build();
//! let entry = debian.add("trixie", &libc);
//! debian.write();
//!
//! let server = Server::serve(tmp.path());
//! let mirror = format!("{}/debian", server.url());
//! std::fs::write(tmp.path().join("archive-key.asc"), key.public_armored()).unwrap();
//! // ... run the code under test against `mirror`, then for example:
//! assert_eq!(server.hits("/dists/trixie/InRelease"), 0);
//! server.fail("/InRelease", 503, 2); // the next two fetches fail
//! debian.corrupt_pool_file(&entry.filename); // a hash mismatch for libc6
//! # let _ = mirror;
//! ```

pub mod compress;
pub mod deb;
pub mod front;
pub mod keys;
pub mod proxy;
pub mod registry;
pub mod repo;
pub mod server;
pub mod tls;

pub use compress::Compression;
pub use deb::{DebBuilder, EntryKind, RawEntry, ar_archive};
pub use keys::{KeyAlgorithm, KeySpec, SigningKey, clearsign, clearsign_at, detached_sign_at};
pub use repo::{Archive, PoolEntry, SuiteSpec};
pub use server::Server;
