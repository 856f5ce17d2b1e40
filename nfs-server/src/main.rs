//! `sluice`: the Sluice NFS server binary.

use std::path::PathBuf;
use std::process::ExitCode;

use nfs_server::config::{Config, StoreKind};

const USAGE: &str = "\
sluice: a scale-out NFS server

USAGE:
    sluice serve [--config FILE] [--data-dir DIR] [--listen ADDR:PORT]... [--mount-listen ADDR:PORT]...
                 [--portmap auto|serve|register|off] [--memory]
    sluice check-config FILE
    sluice --version

With no options, `sluice serve` runs a single node: data under /var/lib/sluice (as root),
NFSv3 on 0.0.0.0:2049, MOUNT on 0.0.0.0:20048, portmap on 111 if no rpcbind runs, exporting /
read-write to every client with root squashing. Logs: SLUICE_LOG=debug (default info).
";

fn main() -> ExitCode {
    let filter = std::env::var("SLUICE_LOG").unwrap_or_else(|_| "info".into());
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("serve") => serve(&args[1..]),
        Some("check-config") => match args.get(1) {
            Some(p) => match Config::load(&PathBuf::from(p)) {
                Ok(_) => {
                    println!("{p}: OK");
                    ExitCode::SUCCESS
                }
                Err(e) => fail(&e.to_string()),
            },
            None => fail("check-config needs a FILE"),
        },
        Some("--version") | Some("version") => {
            println!("sluice {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Some("help") | Some("--help") | Some("-h") | None => {
            print!("{USAGE}");
            ExitCode::SUCCESS
        }
        Some(other) => fail(&format!("unknown command {other:?}\n\n{USAGE}")),
    }
}

fn fail(msg: &str) -> ExitCode {
    eprintln!("sluice: {msg}");
    ExitCode::from(2)
}

fn serve(args: &[String]) -> ExitCode {
    let mut config_path = None;
    let mut overrides: Vec<(&str, &str)> = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let flag = args[i].as_str();
        let takes_value = !matches!(flag, "--memory");
        let value = if takes_value {
            match args.get(i + 1) {
                Some(v) => v.as_str(),
                None => return fail(&format!("{flag} needs a value")),
            }
        } else {
            ""
        };
        match flag {
            "--config" => config_path = Some(PathBuf::from(value)),
            "--data-dir" | "--listen" | "--mount-listen" | "--portmap" | "--memory" => {
                overrides.push((flag, value))
            }
            other => return fail(&format!("unknown option {other:?}\n\n{USAGE}")),
        }
        i += if takes_value { 2 } else { 1 };
    }
    let mut config = match &config_path {
        Some(p) => match Config::load(p) {
            Ok(c) => c,
            Err(e) => return fail(&e.to_string()),
        },
        None => Config::default_single_node(),
    };
    let (mut listen, mut mount_listen) = (Vec::new(), Vec::new());
    for (flag, value) in overrides {
        let addr = || {
            value
                .parse()
                .map_err(|_| format!("{flag} {value:?}: expected ADDR:PORT, e.g. 0.0.0.0:2049"))
        };
        let r: Result<(), String> = match flag {
            "--data-dir" => {
                config.data_dir = PathBuf::from(value);
                Ok(())
            }
            "--listen" => addr().map(|a| listen.push(a)),
            "--mount-listen" => addr().map(|a| mount_listen.push(a)),
            "--memory" => {
                config.store = StoreKind::Memory;
                Ok(())
            }
            "--portmap" => toml::from_str::<toml::Value>(&format!("v = \"{value}\""))
                .ok()
                .and_then(|v| v.get("v").cloned())
                .and_then(|v| v.try_into().ok())
                .map(|m| config.server.portmap = m)
                .ok_or_else(|| format!("--portmap {value:?}: use auto, serve, register or off")),
            _ => Ok(()),
        };
        if let Err(e) = r {
            return fail(&e);
        }
    }
    if !listen.is_empty() {
        config.server.listen = listen;
    }
    if !mount_listen.is_empty() {
        config.server.mount_listen = mount_listen;
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(&format!("cannot start the runtime: {e}")),
    };
    match rt.block_on(nfs_server::run::run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e.to_string()),
    }
}
