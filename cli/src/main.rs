//! The `factum` binary; see the `factum_cli` library.

fn main() -> std::process::ExitCode {
    factum_cli::main()
}
