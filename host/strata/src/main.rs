//! `strata`: the appliance binary. Parses the command line, loads the configuration and runs
//! the chosen role. The roles themselves are wired in their own modules; this file stays small.

mod agent_role;
mod cli;
mod cluster_roles;
mod logging;
mod plugins_wiring;
mod security;
mod shutdown;
mod single;
mod status_config;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;
use strata_config::{ApplianceConfig, ConfigError, Role};

use crate::cli::{Cli, Command};

/// Exit code for a configuration the process cannot start with (also clap's usage-error code).
const EXIT_BAD_CONFIG: u8 = 2;
/// Exit code for a failure while running.
const EXIT_RUNTIME: u8 = 1;

fn main() -> ExitCode {
    let cli = Cli::parse();

    if let Some(Command::CheckConfig { file }) = &cli.command {
        return check_config(file, &cli);
    }

    let config = match load_config(&cli) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("strata: {err}");
            return ExitCode::from(EXIT_BAD_CONFIG);
        }
    };
    let role = cli.command.as_ref().and_then(Command::role).unwrap_or(config.role);
    logging::init(&config.log);

    let result = match role {
        Role::Single => single::run(config),
        Role::Storage | Role::Insert | Role::Select => cluster_roles::run(role, config),
        Role::Agent => agent_role::run(config),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!("{err:#}");
            eprintln!("strata: {err:#}");
            ExitCode::from(EXIT_RUNTIME)
        }
    }
}

/// The explicit `--config`, or ./appliance.toml if present, or the built-in defaults; then the
/// flags on top, then validation of the result.
fn load_config(cli: &Cli) -> Result<ApplianceConfig, ConfigError> {
    let default_path = PathBuf::from("appliance.toml");
    let path = match &cli.config {
        Some(path) => Some(path.as_path()),
        None if default_path.is_file() => Some(default_path.as_path()),
        None => None,
    };
    let mut config = match path {
        Some(path) => ApplianceConfig::load(path)?,
        None => ApplianceConfig::default(),
    };
    cli.overrides.apply(&mut config);
    config.validate()?;
    Ok(config)
}

#[allow(clippy::print_stdout, reason = "check-config reports its verdict on stdout")]
fn check_config(file: &Path, cli: &Cli) -> ExitCode {
    let checked = ApplianceConfig::load(file).and_then(|mut config| {
        cli.overrides.apply(&mut config);
        config.validate().map(|()| config)
    });
    match checked {
        Ok(config) => {
            let role = config.role;
            println!(
                "{}: OK (role {role}, HTTP {}, data in {}, retention {})",
                file.display(),
                config.http.listen_addr_for(role),
                config.storage.data_path.display(),
                config.storage.retention_period,
            );
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("strata: {err}");
            ExitCode::from(EXIT_BAD_CONFIG)
        }
    }
}
