//! The `berth` binary: parse the command line, set up logging, dispatch, map the exit code.

use std::process::ExitCode;

use clap::Parser;

use berth::cli::{Cli, Command, LogFormat, NewCommand};
use berth::commands::{self, Exit};

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.log_format);
    let result = match &cli.command {
        Command::Validate(a) => commands::validate::run(a),
        Command::Render(a) => commands::render::run(a),
        Command::New(NewCommand::Service(a)) => commands::new::run(a),
        Command::Schema(a) => commands::schema::run(a),
        Command::Diff(a) => commands::converge::run_diff(a),
        Command::Apply(a) => commands::converge::run_apply(a),
        Command::Daemon(a) => commands::daemon::run(a),
        Command::Status(a) => commands::status::run(a),
    };
    match result {
        Ok(exit) => ExitCode::from(exit as u8),
        Err(err) => {
            eprintln!("error: {err}");
            for cause in err.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::from(Exit::Failed as u8)
        }
    }
}
