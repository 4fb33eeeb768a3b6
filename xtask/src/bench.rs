//! Benchmarks (written in a later change).
use anyhow::{bail, Result};

pub fn run(_seconds: u32, _rounds: u32) -> Result<()> {
    bail!("cargo xtask bench is not written yet")
}
