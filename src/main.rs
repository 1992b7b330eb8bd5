//! The `headroom` binary (being written).
fn main() {}
