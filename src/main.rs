//! The `release-guardian` binary: a thin front end over [`release_guardian::cli`].

fn main() -> std::process::ExitCode {
    release_guardian::cli::main()
}
