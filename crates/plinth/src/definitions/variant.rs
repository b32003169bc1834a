//! The variants every image comes in: root or nonroot, with or without
//! the debug tools.

/// The four tags of every image, in output order.
pub const VARIANTS: [Variant; 4] = [
    Variant {
        tag: "latest",
        debug: false,
        nonroot: false,
    },
    Variant {
        tag: "nonroot",
        debug: false,
        nonroot: true,
    },
    Variant {
        tag: "debug",
        debug: true,
        nonroot: false,
    },
    Variant {
        tag: "debug-nonroot",
        debug: true,
        nonroot: true,
    },
];

/// One variant: its tag, and whether it adds the debug tools and runs as
/// the nonroot user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Variant {
    pub tag: &'static str,
    pub debug: bool,
    pub nonroot: bool,
}
