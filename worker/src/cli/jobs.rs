//! `worker jobs`: the job classes this binary runs, with their Rust types.

use std::io::Write;

use pubsub_jobs::Registry;

pub(crate) fn run(registry: &Registry) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    for r in registry.iter() {
        writeln!(out, "{}\t{}", r.name(), r.type_name())?;
    }
    Ok(())
}
