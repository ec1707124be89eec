//! Arbitrary bytes as the frames a live trace and `top`'s sampler look at:
//! naming a frame's head, its protocol, every kind of filter, the sampled
//! conversation. Nothing may panic; a filter with no condition matches
//! everything, and a frame matches a protocol filter only if it has that
//! protocol.
//!
//! Input: the frame (its first bytes also pick the filter's conditions).

#![no_main]

use libfuzzer_sys::fuzz_target;
use switchd::dataplane::flows::{Conversations, Sampler};
use switchd::dataplane::live::{self, Filter, Origin, Proto};
use switchd::switch::{Action, DropReason, Plan};

fuzz_target!(|data: &[u8]| fuzz_one(data));

fn fuzz_one(data: &[u8]) {
    let named = live::summarize(data);
    assert!(!named.is_empty());
    let proto = live::protocol(data);
    let origin = Origin::Vtep([198, 18, 0, 2].into());
    let plan = Plan { action: Action::Drop(DropReason::Truncated), ..Plan::default() };
    assert!(Filter::default().matches(origin, data, None, &plan));
    let pick = data.first().copied().unwrap_or(0);
    let wanted = match pick % 4 {
        0 => Proto::Arp,
        1 => Proto::Ip(1),
        2 => Proto::Ip(6),
        _ => Proto::Ip(17),
    };
    let filter = Filter {
        proto: Some(wanted),
        host: (pick & 4 != 0).then(|| ([198, 18, 0, 2].into(), Vec::new())),
        endpoint: (pick & 8 != 0).then(|| (Vec::new(), vec![switchd_config::MacAddr([2, 0, 0, 0, 0, 1])])),
        ..Filter::default()
    };
    if filter.matches(origin, data, Some(u32::from(pick)), &plan) {
        assert_eq!(proto, Some(wanted));
    }
    let mut sampler = Sampler::new(0);
    for _ in 0..switchd::dataplane::flows::SAMPLE_EVERY {
        sampler.count(data);
    }
    assert!(sampler.taken.len() <= 1);
    Conversations::default().add(&mut sampler.taken, std::time::Instant::now());
}
