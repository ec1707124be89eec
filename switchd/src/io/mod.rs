//! Everything that touches the kernel: the ports' devices (TAP, AF_PACKET),
//! network namespaces, netlink configuration, epoll. The rest of switchd
//! calls these and stays free of system calls.

pub mod epoll;
pub mod gateway;
pub mod netlink;
pub mod netns;
pub mod nftables;
pub mod packet;
pub mod sys;
pub mod tap;
pub mod udp;
pub mod uring;
