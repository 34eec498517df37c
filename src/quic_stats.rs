//! quinn's per-connection counters summed over many QUIC connections: UDP
//! datagrams and send/receive operations, frames by type, loss and congestion.
//! The origin exposes the sum at `/metrics` (`h3live_quic_*`), the load tool
//! puts its clients' sum in its report; `scripts/bench.sh --budget` turns both
//! into packets, ACKs and syscalls per delivered megabyte.
//!
//! A [`QuicTally`] holds a handle on every connection it tracks, so a scrape
//! reads the live connections' counters as they are (nothing is sampled on
//! the send path), and keeps the final counters of the closed ones.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde::Serialize;

/// Counters summed over connections (quinn's `ConnectionStats`, by name).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct QuicTotals {
    /// Connections counted.
    pub connections: u64,
    /// UDP datagrams sent.
    pub tx_datagrams: u64,
    /// UDP payload bytes sent.
    pub tx_bytes: u64,
    /// Send operations handed to the socket (one `sendmsg` each; with GSO one
    /// carries several datagrams).
    pub tx_ios: u64,
    /// UDP datagrams received.
    pub rx_datagrams: u64,
    /// UDP payload bytes received.
    pub rx_bytes: u64,
    /// Receive operations as quinn counts them for a connection.
    pub rx_ios: u64,
    /// ACK frames sent.
    pub tx_acks: u64,
    /// ACK frames received.
    pub rx_acks: u64,
    /// STREAM frames sent.
    pub tx_stream_frames: u64,
    /// STREAM frames received.
    pub rx_stream_frames: u64,
    /// ACK_FREQUENCY frames sent (only to peers that support the extension).
    pub tx_ack_frequency: u64,
    /// ACK_FREQUENCY frames received.
    pub rx_ack_frequency: u64,
    /// IMMEDIATE_ACK frames sent.
    pub tx_immediate_acks: u64,
    /// PING frames sent.
    pub tx_pings: u64,
    /// MAX_DATA and MAX_STREAM_DATA frames received (flow control credit).
    pub rx_flow_credit: u64,
    /// Packets sent (on the current path).
    pub sent_packets: u64,
    /// Packets declared lost.
    pub lost_packets: u64,
    /// Congestion events.
    pub congestion_events: u64,
    /// Smallest path MTU (largest UDP payload) among the connections counted.
    pub mtu_min: u16,
    /// Largest path MTU among the connections counted.
    pub mtu_max: u16,
}

impl QuicTotals {
    /// One connection's counters.
    pub fn of(s: &quinn::ConnectionStats) -> QuicTotals {
        QuicTotals {
            connections: 1,
            tx_datagrams: s.udp_tx.datagrams,
            tx_bytes: s.udp_tx.bytes,
            tx_ios: s.udp_tx.ios,
            rx_datagrams: s.udp_rx.datagrams,
            rx_bytes: s.udp_rx.bytes,
            rx_ios: s.udp_rx.ios,
            tx_acks: s.frame_tx.acks,
            rx_acks: s.frame_rx.acks,
            tx_stream_frames: s.frame_tx.stream,
            rx_stream_frames: s.frame_rx.stream,
            tx_ack_frequency: s.frame_tx.ack_frequency,
            rx_ack_frequency: s.frame_rx.ack_frequency,
            tx_immediate_acks: s.frame_tx.immediate_ack,
            tx_pings: s.frame_tx.ping,
            rx_flow_credit: s.frame_rx.max_data + s.frame_rx.max_stream_data,
            sent_packets: s.path.sent_packets,
            lost_packets: s.path.lost_packets,
            congestion_events: s.path.congestion_events,
            mtu_min: s.path.current_mtu,
            mtu_max: s.path.current_mtu,
        }
    }

    /// Add another sum.
    pub fn merge(&mut self, o: &QuicTotals) {
        if o.connections == 0 {
            return;
        }
        self.mtu_min = if self.connections == 0 { o.mtu_min } else { self.mtu_min.min(o.mtu_min) };
        self.mtu_max = self.mtu_max.max(o.mtu_max);
        self.connections += o.connections;
        self.tx_datagrams += o.tx_datagrams;
        self.tx_bytes += o.tx_bytes;
        self.tx_ios += o.tx_ios;
        self.rx_datagrams += o.rx_datagrams;
        self.rx_bytes += o.rx_bytes;
        self.rx_ios += o.rx_ios;
        self.tx_acks += o.tx_acks;
        self.rx_acks += o.rx_acks;
        self.tx_stream_frames += o.tx_stream_frames;
        self.rx_stream_frames += o.rx_stream_frames;
        self.tx_ack_frequency += o.tx_ack_frequency;
        self.rx_ack_frequency += o.rx_ack_frequency;
        self.tx_immediate_acks += o.tx_immediate_acks;
        self.tx_pings += o.tx_pings;
        self.rx_flow_credit += o.rx_flow_credit;
        self.sent_packets += o.sent_packets;
        self.lost_packets += o.lost_packets;
        self.congestion_events += o.congestion_events;
    }

    /// The counters as (metric suffix, direction or `""`, value), for the exposition.
    pub fn counters(&self) -> [(&'static str, &'static str, u64); 19] {
        [
            ("udp_datagrams", "tx", self.tx_datagrams),
            ("udp_datagrams", "rx", self.rx_datagrams),
            ("udp_bytes", "tx", self.tx_bytes),
            ("udp_bytes", "rx", self.rx_bytes),
            ("udp_ios", "tx", self.tx_ios),
            ("udp_ios", "rx", self.rx_ios),
            ("ack_frames", "tx", self.tx_acks),
            ("ack_frames", "rx", self.rx_acks),
            ("stream_frames", "tx", self.tx_stream_frames),
            ("stream_frames", "rx", self.rx_stream_frames),
            ("ack_frequency_frames", "tx", self.tx_ack_frequency),
            ("ack_frequency_frames", "rx", self.rx_ack_frequency),
            ("immediate_ack_frames", "tx", self.tx_immediate_acks),
            ("ping_frames", "tx", self.tx_pings),
            ("flow_credit_frames", "rx", self.rx_flow_credit),
            ("sent_packets", "", self.sent_packets),
            ("lost_packets", "", self.lost_packets),
            ("congestion_events", "", self.congestion_events),
            ("connections", "", self.connections),
        ]
    }
}

/// The connections being counted, and the sum of those that ended.
#[derive(Debug, Default)]
pub struct QuicTally {
    /// Live connections by tracking number, and the sum of the closed ones.
    inner: Mutex<TallyInner>,
}

#[derive(Debug, Default)]
struct TallyInner {
    /// Next tracking number.
    next: u64,
    /// Connections being tracked.
    live: HashMap<u64, quinn::Connection>,
    /// Final counters of connections no longer tracked.
    closed: QuicTotals,
}

/// One tracked connection: its final counters go to the tally's closed sum
/// when this is dropped (and the tally lets go of the connection).
#[derive(Debug)]
pub struct Tracked {
    /// The tally.
    tally: Arc<QuicTally>,
    /// The connection's tracking number.
    id: u64,
}

impl QuicTally {
    /// Count `conn` until the returned guard is dropped.
    pub fn track(self: &Arc<Self>, conn: &quinn::Connection) -> Tracked {
        let mut t = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let id = t.next;
        t.next += 1;
        t.live.insert(id, conn.clone());
        Tracked { tally: self.clone(), id }
    }

    /// The sum over every connection tracked so far, live and closed.
    pub fn totals(&self) -> QuicTotals {
        let t = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let mut sum = t.closed;
        for c in t.live.values() {
            sum.merge(&QuicTotals::of(&c.stats()));
        }
        sum
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        let mut t = self.tally.inner.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = t.live.remove(&self.id) {
            t.closed.merge(&QuicTotals::of(&c.stats()));
        }
    }
}
