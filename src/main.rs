use clap::Parser;

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
