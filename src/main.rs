//! The `berth` binary: parse the command line, set up logging, dispatch, map the exit code.

use std::process::ExitCode;

use clap::Parser;

use berth::cli::{Cli, Command, LogFormat, NewCommand};
use berth::commands::{self, Exit};

fn init_tracing(format: LogFormat) {
    use std::io::IsTerminal as _;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colour only on a terminal, and never with NO_COLOR set (https://no-color.org).
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(colour);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            // --help and --version are not errors; anything else is a usage error.
            return if e.use_stderr() { ExitCode::from(Exit::Usage.code()) } else { ExitCode::SUCCESS };
        }
    };
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
        Command::Sync(a) => commands::operate::sync(a),
        Command::History(a) => commands::operate::history(a),
        Command::Rollback(a) => commands::operate::rollback(a),
        Command::Unpin(a) => commands::operate::unpin(a),
        Command::Pause(a) => commands::operate::pause(a),
        Command::Resume(a) => commands::operate::resume(a),
        Command::Run(a) => commands::run::run(a),
        Command::Completions(a) => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            let mut out = Vec::new();
            clap_complete::generate(a.shell, &mut cmd, "berth", &mut out);
            commands::emit(&String::from_utf8_lossy(&out));
            Ok(Exit::Ok)
        }
        Command::Man => man(),
    };
    match result {
        Ok(exit) => ExitCode::from(exit.code()),
        Err(err) => {
            eprintln!("error: {err}");
            for cause in err.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::from(Exit::Failed.code())
        }
    }
}

/// The man page (roff): berth's options, its commands and the exit codes.
fn man() -> anyhow::Result<Exit> {
    let mut out = Vec::new();
    clap_mangen::Man::new(<Cli as clap::CommandFactory>::command()).render(&mut out)?;
    commands::emit(&String::from_utf8_lossy(&out));
    Ok(Exit::Ok)
}
