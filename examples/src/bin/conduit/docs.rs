//! `conduit completions SHELL` and `conduit man --out DIR`: shell completions and man pages,
//! generated from the command's own definitions (so they never drift from it).

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::CommandFactory as _;

use crate::Cli;

/// Writes the completion script for `shell` to stdout.
pub(crate) fn completions(shell: clap_complete::Shell) -> anyhow::Result<ExitCode> {
    use std::io::Write as _;
    let mut cmd = Cli::command();
    // Into memory first: the generator panics on a failed write (a closed pipe).
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut cmd, "conduit", &mut script);
    let mut out = std::io::stdout().lock();
    match out.write_all(&script).and_then(|()| out.flush()) {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(ExitCode::SUCCESS),
        Err(e) => Err(e).context("cannot write the completion script"),
    }
}

/// Writes `conduit.1` and one page per subcommand (`conduit-register.1`, …) into `out`.
pub(crate) fn man(out: &Path) -> anyhow::Result<ExitCode> {
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let cmd = Cli::command().name("conduit");
    let mut written = 0;
    write_pages(&cmd, ("conduit", "conduit"), out, &mut written)?;
    eprintln!("wrote {written} man pages to {}", out.display());
    Ok(ExitCode::SUCCESS)
}

/// The page of `cmd` as `file` (`conduit-ca-sign-intermediate`), its synopsis as typed
/// (`conduit ca sign-intermediate`), then its subcommands'.
fn write_pages(
    cmd: &clap::Command,
    (name, typed): (&str, &str),
    out: &Path,
    written: &mut usize,
) -> anyhow::Result<()> {
    let page = cmd.clone().name(name.to_owned()).bin_name(typed.to_owned());
    let mut buf = Vec::new();
    clap_mangen::Man::new(page).render(&mut buf)?;
    let file = out.join(format!("{name}.1"));
    std::fs::write(&file, buf).with_context(|| format!("cannot write {}", file.display()))?;
    *written += 1;
    for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
        let sub_name = format!("{name}-{}", sub.get_name());
        let sub_typed = format!("{typed} {}", sub.get_name());
        write_pages(sub, (&sub_name, &sub_typed), out, written)?;
    }
    Ok(())
}
