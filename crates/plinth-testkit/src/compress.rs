//! The compressors `.deb` members and archive indices use.
//!
//! Owns one deterministic setting per format (no timestamps, no file
//! names, single-threaded) so that the same input always gives the same
//! bytes, and the matching decompressors the fixtures need to read their
//! own output back.

use std::io::{Read, Write};

/// A compression format for `control.tar`, `data.tar` or an index file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Compression {
    /// `.xz`, what Debian uses for most packages.
    Xz,
    /// `.zst`, accepted by dpkg since 1.21.18 and used by Ubuntu.
    Zstd,
    /// `.gz`, the historical default.
    Gzip,
    /// No compression: members are plain `control.tar` / `data.tar`.
    None,
}

impl Compression {
    /// All four formats, for tests that loop over them.
    pub const ALL: [Compression; 4] = [
        Compression::Xz,
        Compression::Zstd,
        Compression::Gzip,
        Compression::None,
    ];

    /// File-name suffix including the dot (`".xz"`), empty for `None`.
    pub fn extension(self) -> &'static str {
        match self {
            Compression::Xz => ".xz",
            Compression::Zstd => ".zst",
            Compression::Gzip => ".gz",
            Compression::None => "",
        }
    }

    /// Compresses `data` in memory.
    pub fn compress(self, data: &[u8]) -> Vec<u8> {
        match self {
            Compression::Xz => {
                let mut enc = liblzma::write::XzEncoder::new(Vec::new(), 6);
                enc.write_all(data).expect("xz into memory");
                enc.finish().expect("xz into memory")
            }
            Compression::Zstd => zstd::encode_all(data, 3).expect("zstd into memory"),
            Compression::Gzip => {
                // GzBuilder's defaults leave mtime at 0 and write no name.
                let mut enc =
                    flate2::GzBuilder::new().write(Vec::new(), flate2::Compression::new(9));
                enc.write_all(data).expect("gzip into memory");
                enc.finish().expect("gzip into memory")
            }
            Compression::None => data.to_vec(),
        }
    }

    /// Decompresses `data` in memory.
    pub fn decompress(self, data: &[u8]) -> std::io::Result<Vec<u8>> {
        let mut out = Vec::new();
        match self {
            Compression::Xz => {
                liblzma::read::XzDecoder::new(data).read_to_end(&mut out)?;
            }
            Compression::Zstd => out = zstd::decode_all(data)?,
            Compression::Gzip => {
                flate2::read::GzDecoder::new(data).read_to_end(&mut out)?;
            }
            Compression::None => out = data.to_vec(),
        }
        Ok(out)
    }

    /// The format a member or file name's suffix names, if any.
    pub fn from_file_name(name: &str) -> Option<Compression> {
        if name.ends_with(".xz") {
            Some(Compression::Xz)
        } else if name.ends_with(".zst") {
            Some(Compression::Zstd)
        } else if name.ends_with(".gz") {
            Some(Compression::Gzip)
        } else if name.ends_with(".tar") {
            Some(Compression::None)
        } else {
            None
        }
    }
}
