//! `sharebench`: see `harness::cli` for the commands and exit codes.
fn main() -> std::process::ExitCode {
    harness::cli::main()
}
