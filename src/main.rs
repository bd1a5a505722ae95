use clap::Parser;

/// mimalloc instead of the system allocator: requests allocate on tokio's threads and the
/// store frees on its writer thread, a pattern glibc's allocator serves poorly (a fifth of a
/// send's CPU went to malloc, free and their consolidation).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = otpgate::cli::Cli::parse();
    match otpgate::cli::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("otpgate: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
