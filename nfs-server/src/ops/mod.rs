//! Operations: how Sluice is run and watched, apart from the protocols it serves. The command
//! line and its HTTP client ([`cli`]), the admin API ([`admin`], with [`tls`]), the
//! configuration file ([`config`]) and startup ([`run`]: binds the listeners, opens the store
//! and the protocol state, starts the transports). The request path never calls into here.

pub mod admin;
pub mod cli;
pub mod config;
pub mod failover;
pub mod run;
pub mod tls;
