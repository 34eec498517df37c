//! `h3live pathemu`: a network path emulator that needs no sch_netem, and
//! the self-check that proves a path measures as configured.
//!
//! - [`spec`]: one direction of a path as text (`delay=25ms,jitter=10ms,
//!   loss=1%`, `burst=2%/3`, `rate=3200kbit,queue=100ms`), its description
//!   and its `tc netem` equivalent (used where the kernel has sch_netem).
//! - [`model`]: the per-packet decisions (loss, bottleneck, delay + jitter),
//!   pure and unit-tested.
//! - [`queue`]: the user-space engine: NFQUEUE with delayed verdicts.
//! - [`probe`]: `pathemu echo` / `pathemu check`, the measurement of RTT,
//!   one-way delay, jitter, loss per direction, rate and queue limit.
//! - [`profile`]: the A/B path profiles (`rtt50-loss1`, ...) as the two
//!   directions' specs (`pathemu profile`, what `scripts/ab.sh` sets up).
//!
//! `scripts/ab.sh` runs one `pathemu run` per direction, each in the
//! receiving namespace, with an iptables rule diverting the veth's incoming
//! packets to it.

pub mod model;
pub mod probe;
pub mod profile;
pub mod queue;
pub mod spec;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};

use spec::DirSpec;

/// `h3live pathemu` subcommands.
#[derive(Debug, Subcommand)]
pub enum PathemuCmd {
    /// Emulate one direction of a path on netfilter queue N (divert packets to it with
    /// `iptables -t raw -A PREROUTING -i DEV -j NFQUEUE --queue-num N`). Runs until SIGTERM/SIGINT.
    Run(RunArgs),
    /// Echo server for `pathemu check` (UDP echo + TCP control on the same port).
    Echo(EchoArgs),
    /// Measure the path to a `pathemu echo` server and compare it with the configured one;
    /// exits with 1 when anything is out of tolerance.
    Check(Box<probe::CheckArgs>),
    /// Print the `tc qdisc ... netem` arguments for a spec (the same path where sch_netem exists).
    NetemArgs(SpecArg),
    /// Print a human description of a spec.
    Describe(SpecArg),
    /// Print the paths of an A/B profile (`rtt50-loss1`; parts: clean, rttN, lossN, jitterN,
    /// reorder, burst[N], rate[K], step) as `DOWN='spec'`, `UP='spec'`, `STEP=0|1`, `DESC='text'`
    /// lines for a shell, or as JSON.
    Profile(ProfileArgs),
}

/// Options of `pathemu profile`.
#[derive(Debug, Args)]
pub struct ProfileArgs {
    /// The profile name, e.g. rtt50-loss1, rtt80-rate, rate-step.
    pub name: String,
    /// What a bare `rate` part means, in kbit/s (the A/B harness passes 1.5 x the stream's rate).
    #[arg(long, value_name = "KBIT")]
    pub rate_default: Option<u64>,
    /// Print JSON instead of shell assignments.
    #[arg(long)]
    pub json: bool,
}

/// Options of `pathemu run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Netfilter queue number (per network namespace).
    #[arg(long, default_value_t = 0)]
    pub queue: u16,
    /// The path, e.g. `delay=25ms,jitter=10ms,dist=normal,loss=1%` (see `pathemu describe`).
    #[arg(long)]
    pub spec: DirSpec,
    /// Random seed for loss and jitter (default: from the clock).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Write counters (JSON) here every second and at exit.
    #[arg(long)]
    pub stats: Option<PathBuf>,
}

/// Options of `pathemu echo`.
#[derive(Debug, Args)]
pub struct EchoArgs {
    /// Address to listen on (UDP and TCP).
    #[arg(long)]
    pub listen: SocketAddr,
}

/// A single spec argument.
#[derive(Debug, Args)]
pub struct SpecArg {
    /// The spec text.
    pub spec: DirSpec,
}

/// Give socket `fd` a receive buffer of `bytes` past `net.core.rmem_max`
/// (`SO_RCVBUFFORCE`, root only): room for bursts while the reading thread
/// is not running. False if the kernel refused.
fn force_recv_buffer(fd: std::os::fd::RawFd, bytes: libc::c_int) -> bool {
    // SAFETY: setsockopt reads one c_int.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&bytes as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        ) == 0
    }
}

/// A flag set by SIGINT/SIGTERM (for the blocking loops of `run` and `echo`).
fn stop_flag() -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    tokio::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
        }
        s.store(true, Ordering::Relaxed);
    });
    stop
}

/// Entry point of `h3live pathemu`.
pub async fn main(cmd: PathemuCmd) -> Result<()> {
    match cmd {
        PathemuCmd::Run(a) => {
            let stop = stop_flag();
            let seed = a.seed.unwrap_or_else(probe::mono_ns);
            eprintln!("pathemu: queue {} — {} [{}], seed {seed}", a.queue, a.spec.describe(), a.spec);
            let st = tokio::task::spawn_blocking(move || queue::run(a.queue, a.spec, seed, a.stats.as_deref(), &stop))
                .await
                .context("emulator thread")??;
            eprintln!(
                "pathemu: queue {} done: {} packets, {} lost, {} queue drops, {:.2} CPU s in {:.1} s, lateness p99 {} µs",
                a.queue, st.packets, st.dropped_loss, st.dropped_queue, st.cpu_s, st.wall_s, st.late_p99_us
            );
            Ok(())
        }
        PathemuCmd::Echo(a) => {
            let stop = stop_flag();
            tokio::task::spawn_blocking(move || probe::echo_server(a.listen, &stop)).await.context("echo thread")?
        }
        PathemuCmd::Check(a) => {
            let r = tokio::task::spawn_blocking(move || probe::check(&a)).await.context("check thread")??;
            print!("{}", probe::render(&r));
            if !r.ok {
                std::process::exit(1);
            }
            Ok(())
        }
        PathemuCmd::NetemArgs(a) => {
            println!("{}", a.spec.netem_args().join(" "));
            Ok(())
        }
        PathemuCmd::Describe(a) => {
            println!("{}", a.spec.describe());
            Ok(())
        }
        PathemuCmd::Profile(a) => {
            let p = profile::Profile::parse(&a.name, a.rate_default).map_err(|e| anyhow::anyhow!("profile {e}"))?;
            if a.json {
                println!("{}", p.json());
            } else {
                print!("{}", p.shell());
            }
            Ok(())
        }
    }
}
