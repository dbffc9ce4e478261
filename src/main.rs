fn main() -> std::process::ExitCode {
    pistats::cli::main()
}
