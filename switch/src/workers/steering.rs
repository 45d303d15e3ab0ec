//! Which socket of the switch's `SO_REUSEPORT` group receives a datagram.
//!
//! Left to the kernel's hash of the 4-tuple, a node's datagrams would reach
//! the core's socket or a worker's by chance. Instead a classic BPF program
//! on the group (`SO_ATTACH_REUSEPORT_CBPF`) reads the tapmesh header (the
//! program sees the UDP payload): data datagrams go to worker
//! `1 + receiver_index % (N - 1)`; handshake responses and cookie replies
//! (the trunks to other switches; version, type and length exact, so random
//! bytes hardly ever pass for one) to the core's socket, index 0; everything
//! else (handshake initiations, unknown types, junk) to worker
//! `1 + word at bytes 8..12 % (N - 1)` (an initiation's sender index), and
//! datagrams shorter than 12 bytes to worker 1, where the handshake gate
//! ([`super::gate`]) checks them before the core sees any. One session's datagrams
//! thus always reach one worker, in order; a rekey may move the flow to
//! another worker, and only at that boundary can two workers' batches
//! interleave (the nodes' replay windows accept that). The sockets' indices
//! are their bind order: the core's first. An index with no socket yet
//! makes the kernel fall back to its hash.
//!
//! Offsets are the data header's (docs/protocol.md): the message type is the
//! low nibble of byte 0, the receiver index bytes 8..12.

use std::os::fd::RawFd;

use overlay_proto::wire::{COOKIE_REPLY_LEN, HS_RESP_LEN};

/// `SO_ATTACH_REUSEPORT_CBPF` (include/uapi/asm-generic/socket.h).
const SO_ATTACH_REUSEPORT_CBPF: libc::c_int = 51;
const TYPE_OFFSET: u32 = 0;
const TYPE_MASK: u32 = 0x0f;
/// `MessageType::Data` on the wire.
const TYPE_DATA: u32 = 1;
/// The first byte (version 1) and length of a handshake response and a
/// cookie reply: the core's.
const HANDSHAKE_RESP: (u32, u32) = (0x13, HS_RESP_LEN as u32);
const COOKIE_REPLY: (u32, u32) = (0x15, COOKIE_REPLY_LEN as u32);
const RECEIVER_INDEX_OFFSET: u32 = 8;
/// Shorter datagrams go to worker 1 (the index is not there to read).
const MIN_LEN: u32 = RECEIVER_INDEX_OFFSET + 4;

fn op(code: u32, jt: u8, jf: u8, k: u32) -> libc::sock_filter {
    libc::sock_filter {
        code: code as u16,
        jt,
        jf,
        k,
    }
}

/// The program for `workers` sockets (more than one).
pub fn program(workers: usize) -> Vec<libc::sock_filter> {
    use libc::{
        BPF_A, BPF_ABS, BPF_ADD, BPF_ALU, BPF_AND, BPF_B, BPF_JEQ, BPF_JGE, BPF_JMP, BPF_K, BPF_LD,
        BPF_LEN, BPF_MISC, BPF_MOD, BPF_RET, BPF_TAX, BPF_TXA, BPF_W,
    };
    let threads = (workers.max(2) - 1) as u32;
    vec![
        op(BPF_LD | BPF_W | BPF_LEN, 0, 0, 0),
        op(BPF_JMP | BPF_JGE | BPF_K, 1, 0, MIN_LEN),
        op(BPF_RET | BPF_K, 0, 0, 1),
        op(BPF_MISC | BPF_TAX, 0, 0, 0),
        op(BPF_LD | BPF_B | BPF_ABS, 0, 0, TYPE_OFFSET),
        op(BPF_ALU | BPF_AND | BPF_K, 0, 0, TYPE_MASK),
        op(BPF_JMP | BPF_JEQ | BPF_K, 8, 0, TYPE_DATA),
        op(BPF_LD | BPF_B | BPF_ABS, 0, 0, TYPE_OFFSET),
        op(BPF_JMP | BPF_JEQ | BPF_K, 1, 0, HANDSHAKE_RESP.0),
        op(BPF_JMP | BPF_JEQ | BPF_K, 2, 5, COOKIE_REPLY.0),
        op(BPF_MISC | BPF_TXA, 0, 0, 0),
        op(BPF_JMP | BPF_JEQ | BPF_K, 2, 3, HANDSHAKE_RESP.1),
        op(BPF_MISC | BPF_TXA, 0, 0, 0),
        op(BPF_JMP | BPF_JEQ | BPF_K, 0, 1, COOKIE_REPLY.1),
        op(BPF_RET | BPF_K, 0, 0, 0),
        op(BPF_LD | BPF_W | BPF_ABS, 0, 0, RECEIVER_INDEX_OFFSET),
        op(BPF_ALU | BPF_MOD | BPF_K, 0, 0, threads),
        op(BPF_ALU | BPF_ADD | BPF_K, 0, 0, 1),
        op(BPF_RET | BPF_A, 0, 0, 0),
    ]
}

/// Attach the program for `workers` sockets to the group of `socket`.
pub fn attach(socket: RawFd, workers: usize) -> std::io::Result<()> {
    let mut filter = program(workers);
    let prog = libc::sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_mut_ptr(),
    };
    // SAFETY: `prog` points at `filter`, which outlives the call; the kernel
    // copies the program and checks it.
    let r = unsafe {
        libc::setsockopt(
            socket,
            libc::SOL_SOCKET,
            SO_ATTACH_REUSEPORT_CBPF,
            (&raw const prog).cast(),
            std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// What [`program`] computes, for tests: the socket index for `payload`.
#[cfg(test)]
pub fn select(workers: usize, payload: &[u8]) -> u32 {
    let at = RECEIVER_INDEX_OFFSET as usize;
    let Some(word) = payload.get(at..at + 4) else {
        return 1;
    };
    let first_and_len = (u32::from(payload[0]), payload.len() as u32);
    let data = first_and_len.0 & TYPE_MASK == TYPE_DATA;
    if !data && (first_and_len == HANDSHAKE_RESP || first_and_len == COOKIE_REPLY) {
        return 0;
    }
    1 + u32::from_be_bytes(word.try_into().unwrap()) % (workers as u32 - 1)
}
