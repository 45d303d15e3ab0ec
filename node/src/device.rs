//! What the shell needs from a frame device (the TAP): read a frame, write a
//! frame, and know its name, its MTU and whether it speaks with a virtio-net
//! header. The shell's loop is written against this trait; the real TAP
//! ([`crate::tap::Tap`]) implements it.
use std::future::Future;
use std::io;
use std::os::fd::{OwnedFd, RawFd};
use std::sync::Arc;

/// A device that exchanges Ethernet frames with the kernel, one per read or
/// write.
pub trait FrameDevice {
    /// The interface name.
    fn name(&self) -> &str;

    /// The IP MTU: frames up to this plus the Ethernet header (and one VLAN
    /// tag), or super-frames of segments that size.
    fn mtu(&self) -> usize;

    /// Offloads on: every frame read starts with a virtio-net header, and
    /// every frame written must ([`overlay_proto::vnet`]).
    fn has_vnet(&self) -> bool;

    /// Wait for one frame and read it into `buf`; its length.
    fn recv(&self, buf: &mut [u8]) -> impl Future<Output = io::Result<usize>>;

    /// Read one frame into `buf` without waiting (`WouldBlock` if none).
    fn try_recv(&self, buf: &mut [u8]) -> io::Result<usize>;

    /// Write one frame.
    fn send(&self, frame: &[u8]) -> impl Future<Output = io::Result<usize>>;

    /// The descriptor to poll for readability (busy-polling,
    /// `tapmesh_shell::busy_poll`).
    fn raw_fd(&self) -> RawFd;

    /// The device's other queues, for sealing workers (`crate::workers`);
    /// none unless it was opened with several.
    fn extra_queues(&self) -> &[Arc<OwnedFd>] {
        &[]
    }
}
