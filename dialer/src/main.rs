//! `dialer`: the command line. Exit codes: 0 ok, 1 failure, 2 usage, 3 invalid input (nothing written),
//! 4 PostgreSQL unavailable.

mod cli;
mod engine;
mod webhooks;

use std::process::ExitCode;

fn main() -> ExitCode {
    // Piped into `head`, a CLI should stop quietly, not panic on a closed stdout: restore the default
    // SIGPIPE action that Rust's runtime replaces.
    #[cfg(unix)]
    // SAFETY: called first thing, before any other thread exists; SIG_DFL is a valid handler.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    cli::main()
}
