//! `sluice`: the Sluice NFS server binary, and the operator CLI for a running node.
//!
//! The command tree is defined in `nfs_server::ops::cli`; `serve` and `config check` are run here,
//! everything else talks to the admin API (`docs/admin-api.md`).

use std::path::Path;
use std::process::ExitCode;

use clap::{CommandFactory, Parser};
use nfs_server::ops::cli::{self, Cli, Command, ConfigCommand, LogFormat, ServeArgs};
use nfs_server::ops::config::{Config, StoreKind};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match &cli.command {
        Command::Serve(args) => {
            init_logging(args.log_format);
            serve(args)
        }
        Command::Config(ConfigCommand::Check { file }) | Command::CheckConfig { file } => {
            init_logging(LogFormat::Text);
            check_config(file)
        }
        Command::Completions { shell } => {
            clap_complete::generate(
                *shell,
                &mut Cli::command(),
                "sluice",
                &mut std::io::stdout(),
            );
            ExitCode::SUCCESS
        }
        command => match cli::run_api_command(&cli.client, command) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("sluice: {e}");
                ExitCode::from(e.exit_code())
            }
        },
    }
}

/// Logs on stderr; level from SLUICE_LOG, else RUST_LOG, else info.
fn init_logging(format: LogFormat) {
    let spec = std::env::var("SLUICE_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "info".into());
    let filter = tracing_subscriber::EnvFilter::try_new(&spec).unwrap_or_else(|e| {
        eprintln!("sluice: ignoring the log filter {spec:?} ({e}); logging at info");
        tracing_subscriber::EnvFilter::new("info")
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn fail(msg: &str) -> ExitCode {
    eprintln!("sluice: {msg}");
    ExitCode::from(2)
}

fn check_config(file: &Path) -> ExitCode {
    match Config::load(file) {
        Ok(_) => {
            println!("{}: OK", file.display());
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e.to_string()),
    }
}

/// glibc's malloc serves each 1 MiB WRITE's receive buffer from fresh memory: buffers at or
/// above its (adaptive) mmap threshold are unmapped when freed, and a heap whose top is free
/// past the trim threshold gives it back, so the next record faults its pages in again
/// (measured: 4 x 1 GiB saved twice, 490 000-730 000 minor faults and 5.9-8.0 s of server CPU;
/// with these settings 64 000-97 000 faults and 4.7-6.1 s). Buffers below 4 MiB therefore
/// come from the heap, and up to 128 MiB of free heap is kept for the next ones. An operator's
/// `MALLOC_MMAP_THRESHOLD_` / `MALLOC_TRIM_THRESHOLD_` (or any `glibc.malloc.` tunable) wins.
/// Each thread's arena may keep up to the trim threshold of freed memory.
fn tune_malloc() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let set = |name: &str| std::env::var_os(name).is_some();
        let tunables = std::env::var("GLIBC_TUNABLES").unwrap_or_default();
        if set("MALLOC_MMAP_THRESHOLD_")
            || set("MALLOC_TRIM_THRESHOLD_")
            || tunables.contains("glibc.malloc.")
        {
            return;
        }
        // SAFETY: mallopt only changes two of the allocator's tunables; it is called before
        // the runtime starts any thread, and both values are in the ranges glibc accepts.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 4 << 20);
            libc::mallopt(libc::M_TRIM_THRESHOLD, 128 << 20);
        }
    }
}

fn serve(args: &ServeArgs) -> ExitCode {
    tune_malloc();
    let mut config = match &args.config {
        Some(p) => match Config::load(p) {
            Ok(c) => c,
            Err(e) => return fail(&e.to_string()),
        },
        None => Config::default_single_node(),
    };
    if let Some(dir) = &args.data_dir {
        config.data_dir = dir.clone();
    }
    if !args.listen.is_empty() {
        config.server.listen = args.listen.clone();
    }
    if !args.mount_listen.is_empty() {
        config.server.mount_listen = args.mount_listen.clone();
    }
    if !args.rdma_listen.is_empty() {
        config.rdma.listen = args.rdma_listen.clone();
    }
    if let Some(p) = args.portmap {
        config.server.portmap = p.into();
    }
    if args.memory {
        config.store = StoreKind::Memory;
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(&format!("cannot start the runtime: {e}")),
    };
    match rt.block_on(nfs_server::ops::run::run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // A failed server (its metadata log stopped on a bad disk, say) may leave a
            // blocking task stuck on that disk: exit anyway, for the supervisor to restart.
            rt.shutdown_timeout(std::time::Duration::from_secs(5));
            fail(&e.to_string())
        }
    }
}
