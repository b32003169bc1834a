//! Files no package owns: users and groups, name-service configuration,
//! os-release, the CA bundle, dpkg's `status.d` records, the usr-merge
//! links and the busybox applet links of debug images.
//!
//! Everything here is a pure function of the definitions, the lock and the
//! packages' own bytes, with mtimes set to the image epoch.

use crate::debian::name::PackageName;
use crate::definitions::{Distribution, OsRelease};
use crate::tarfs::{Entry, EntryKind};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SystemError {
    #[error("{package}: {why}")]
    Package { package: String, why: String },
}

pub const NONROOT_UID: u64 = 65532;

const PASSWD: &str = "root:x:0:0:root:/root:/sbin/nologin\n\
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n\
nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n";

const GROUP: &str = "root:x:0:\nnobody:x:65534:\ntty:x:5:\nstaff:x:50:\nnonroot:x:65532:\n";

const NSSWITCH: &str = "passwd:         compat\n\
group:          compat\n\
shadow:         compat\n\
gshadow:        files\n\
\n\
hosts:          files dns\n\
networks:       files\n\
\n\
protocols:      db files\n\
services:       db files\n\
ethers:         db files\n\
rpc:            db files\n\
\n\
netgroup:       nis\n";

/// The top-level directories that usr-merge turns into links into `/usr`.
/// `lib64` only where the ELF loader path goes through it.
pub fn usr_merge_links(arch: &str) -> Vec<Entry> {
    let mut names = vec!["bin", "lib", "sbin"];
    if matches!(arch, "amd64" | "ppc64el" | "s390x" | "mips64el" | "loong64") {
        names.push("lib64");
    }
    names
        .into_iter()
        .flat_map(|n| {
            [
                Entry::symlink(n, format!("usr/{n}")),
                Entry::dir(format!("usr/{n}"), 0o755),
            ]
        })
        .chain([Entry::dir("usr", 0o755)])
        .collect()
}

/// Users, groups, homes, `/tmp`, nsswitch.conf and os-release.
pub fn base_files(os: &OsRelease, dist: &Distribution, epoch: u64) -> Vec<Entry> {
    let name = "Debian GNU/Linux";
    let os_release = format!(
        "PRETTY_NAME=\"{pretty}\"\nNAME=\"{name}\"\nID=\"debian\"\nVERSION_ID=\"{v}\"\nVERSION=\"{name} {v} ({c})\"\nVERSION_CODENAME=\"{c}\"\nHOME_URL=\"{home}\"\nSUPPORT_URL=\"{support}\"\nBUG_REPORT_URL=\"{bugs}\"\n",
        pretty = os.pretty_name,
        v = dist.version,
        c = dist.codename,
        home = os.home_url,
        support = os.support_url,
        bugs = os.bug_report_url,
    );
    let entries = vec![
        Entry::dir("etc", 0o755),
        Entry::file("etc/passwd", 0o644, PASSWD.as_bytes()),
        Entry::file("etc/group", 0o644, GROUP.as_bytes()),
        Entry::file("etc/nsswitch.conf", 0o644, NSSWITCH.as_bytes()),
        Entry::symlink("etc/os-release", "../usr/lib/os-release"),
        Entry::dir("usr/lib", 0o755),
        Entry::file("usr/lib/os-release", 0o644, os_release.into_bytes()),
        Entry::dir("root", 0o700),
        Entry::dir("home", 0o755),
        Entry::dir("home/nonroot", 0o700).owned_by(NONROOT_UID, NONROOT_UID),
        Entry::dir("tmp", 0o1777),
    ];
    at_epoch(entries, epoch)
}

/// `/var/lib/dpkg/status.d/<package>` (the control stanza with a `Status`
/// line, which some scanners require) and `<package>.md5sums`. Only a
/// checked package name can be given, so the file stays in `status.d`.
pub fn dpkg_status(
    package: &PackageName,
    control: &str,
    md5sums: Option<&str>,
    epoch: u64,
) -> Vec<Entry> {
    let mut stanza = String::with_capacity(control.len() + 32);
    for line in control.trim_end().lines() {
        if line.starts_with("Status:") {
            continue;
        }
        stanza.push_str(line);
        stanza.push('\n');
        if line.starts_with("Package:") {
            stanza.push_str("Status: install ok installed\n");
        }
    }
    let dir = "var/lib/dpkg/status.d";
    let mut entries = vec![Entry::file(
        format!("{dir}/{package}"),
        0o644,
        stanza.into_bytes(),
    )];
    if let Some(sums) = md5sums {
        entries.push(Entry::file(
            format!("{dir}/{package}.md5sums"),
            0o644,
            sums.as_bytes(),
        ));
    }
    at_epoch(entries, epoch)
}

/// `/etc/ssl/certs/ca-certificates.crt`: every certificate the package
/// ships under `usr/share/ca-certificates/`, in path order, each ending in
/// a newline, then the organisation's own.
pub fn ca_bundle(
    package: &str,
    entries: &[Entry],
    extra: &[(String, Vec<u8>)],
    epoch: u64,
) -> Result<Entry, SystemError> {
    let mut certs: Vec<(&str, &[u8])> = entries
        .iter()
        .filter(|e| e.path.starts_with("usr/share/ca-certificates/") && e.path.ends_with(".crt"))
        .filter_map(|e| match &e.kind {
            EntryKind::File(bytes) => Some((e.path.as_str(), &bytes[..])),
            _ => None,
        })
        .collect();
    if certs.is_empty() {
        return Err(SystemError::Package {
            package: package.to_owned(),
            why: "ships no certificates under /usr/share/ca-certificates".into(),
        });
    }
    certs.sort();
    let mut bundle = Vec::new();
    for bytes in certs
        .into_iter()
        .map(|(_, b)| b)
        .chain(extra.iter().map(|(_, b)| &b[..]))
    {
        bundle.extend_from_slice(bytes);
        if !bundle.ends_with(b"\n") {
            bundle.push(b'\n');
        }
    }
    let mut e = Entry::file("etc/ssl/certs/ca-certificates.crt", 0o644, bundle);
    e.mtime = epoch;
    Ok(e)
}

/// The debug tools: `/busybox/busybox` (a hard link to the package's
/// binary) and one `/busybox/<applet>` link per applet the binary has.
pub fn busybox(package: &str, entries: &[Entry], epoch: u64) -> Result<Vec<Entry>, SystemError> {
    let fail = |why: String| SystemError::Package {
        package: package.to_owned(),
        why,
    };
    let binary = entries
        .iter()
        .find(|e| {
            e.path.rsplit('/').next() == Some("busybox") && matches!(e.kind, EntryKind::File(_))
        })
        .ok_or_else(|| fail("ships no busybox binary".into()))?;
    let EntryKind::File(bytes) = &binary.kind else {
        return Err(fail("busybox is not a regular file".into()));
    };
    let applets = applet_names(bytes).ok_or_else(|| {
        fail(format!(
            "/{}: no applet table found in the binary",
            binary.path
        ))
    })?;
    let mut out = vec![Entry::dir("busybox", 0o755)];
    let mut link = Entry::file("busybox/busybox", binary.mode, &b""[..]);
    link.kind = EntryKind::Hardlink(binary.path.clone());
    out.push(link);
    // The binary lists itself among its applets; that link would replace
    // the binary with a link to itself.
    for applet in applets.iter().filter(|a| *a != "busybox") {
        out.push(Entry::symlink(format!("busybox/{applet}"), "busybox"));
    }
    Ok(at_epoch(out, epoch))
}

/// busybox keeps its applet names as one sorted, NUL-separated string
/// table starting with `[` and `[[`; reading it from the binary works for
/// every architecture without running it.
fn applet_names(binary: &[u8]) -> Option<Vec<String>> {
    let start = memchr::memmem::find(binary, b"[\0[[\0")?;
    let mut names = Vec::new();
    for raw in binary[start..].split(|&b| b == 0) {
        if raw.is_empty() {
            break;
        }
        let name = std::str::from_utf8(raw).ok()?;
        let valid = name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "[]._-".contains(c));
        if !valid || name.len() > 32 {
            break;
        }
        names.push(name.to_owned());
    }
    let sorted = names.windows(2).all(|w| w[0] < w[1]);
    (names.len() >= 10 && sorted && names.iter().any(|n| n == "sh")).then_some(names)
}

fn at_epoch(entries: Vec<Entry>, epoch: u64) -> Vec<Entry> {
    entries
        .into_iter()
        .map(|mut e| {
            e.mtime = epoch;
            e
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_gets_a_status_line_after_package() {
        let name = PackageName::parse("aa").unwrap();
        let e = dpkg_status(&name, "Package: aa\nVersion: 1\n", Some("x  usr/a\n"), 5);
        let EntryKind::File(b) = &e[0].kind else {
            panic!()
        };
        assert_eq!(
            &b[..],
            b"Package: aa\nStatus: install ok installed\nVersion: 1\n"
        );
        assert_eq!(e[1].path, "var/lib/dpkg/status.d/aa.md5sums");
        assert_eq!(e[0].mtime, 5);
    }

    #[test]
    fn applet_table_is_read_from_the_binary() {
        let mut bin = b"\x7fELF junk\0".to_vec();
        bin.extend_from_slice(
            b"[\0[[\0ash\0busybox\0cat\0cp\0echo\0id\0ls\0mv\0rm\0sh\0true\0\0more",
        );
        let names = applet_names(&bin).unwrap();
        assert_eq!(names.first().unwrap(), "[");
        assert_eq!(names.last().unwrap(), "true");
        assert!(applet_names(b"no table here").is_none());

        let entries = vec![Entry::file("usr/bin/busybox", 0o755, bin)];
        let links = busybox("busybox-static", &entries, 0).unwrap();
        let own = links.iter().find(|e| e.path == "busybox/busybox").unwrap();
        assert_eq!(own.kind, EntryKind::Hardlink("usr/bin/busybox".into()));
        assert_eq!(
            links.iter().filter(|e| e.path == "busybox/busybox").count(),
            1
        );
    }

    #[test]
    fn ca_bundle_is_sorted_and_newline_terminated() {
        let entries = vec![
            Entry::file("usr/share/ca-certificates/mozilla/B.crt", 0o644, &b"B"[..]),
            Entry::file(
                "usr/share/ca-certificates/mozilla/A.crt",
                0o644,
                &b"A\n"[..],
            ),
        ];
        let e = ca_bundle("ca-certificates", &entries, &[], 1).unwrap();
        assert_eq!(e.kind, EntryKind::File(b"A\nB\n"[..].into()));
        assert!(ca_bundle("ca-certificates", &[], &[], 1).is_err());
    }
}
