//! Proves that the firmware and rig cores build without std.
#![no_std]
#![no_main]

use core::panic::PanicInfo;

#[panic_handler]
fn panic(_: &PanicInfo) -> ! {
    loop {}
}

/// Touch the cores so that they are really compiled into this binary.
#[no_mangle]
pub extern "C" fn sharebench_nostd_gate() -> u16 {
    let cfg = firmware::ChargePointConfig::new(320);
    let point = firmware::ChargePoint::new(cfg);
    let duty = firmware::pilot::duty_for_current(160).unwrap_or(0);
    let _ = rig::NO_STD_MARKER;
    match point {
        Ok(p) => p.offered_da().wrapping_add(duty),
        Err(_) => 0,
    }
}
