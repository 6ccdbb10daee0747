//! Interfaces of physical boards: a probe-rs debug probe, an RTT console on a debug port, and
//! power control; plus what every debug port may declare (flashing allowed, where the lock
//! test reads).
//!
//! Kept apart from `interfaces.rs` (how the harness reaches a unit over a wire or a network)
//! because these interfaces refer to others (an RTT console to its debug port, a power plug to
//! a broker) and carry checks of their own (chip names, probe selectors, address ranges).

use std::ops::Range;
use std::time::Duration;

use serde_spanned::Spanned;

use super::build::parse_address;
use super::diag::Diag;
use super::model::{InterfaceSection, ProtocolValue, RawBoardFile};
use super::values::parse_duration;
use super::{DebugPolicy, MqttBroker, PowerDriverSpec, PowerSpec, ProbeRsSpec, RttSpec};
use crate::iface::probe::{check_chip, check_selector, Protocol};
use crate::template::Template;

/// A template checker of the interface being built (syntax and variables).
pub(crate) type Tmpl<'a> = &'a dyn Fn(&mut Diag, &Spanned<String>) -> Option<Template>;

/// An address written in the board file, checked at its value.
fn address(d: &mut Diag, v: &Spanned<String>) -> Option<u64> {
    let a = parse_address(v.get_ref());
    if a.is_none() {
        d.at(
            Some(v.span()),
            format!("{:?} is not an address", v.get_ref()),
            Some("write it in hex (\"0x08000000\") or decimal"),
        );
    }
    a
}

/// `allow_flash` and `lock_test_address` of a debug port.
pub(crate) fn debug_policy(d: &mut Diag, i: &InterfaceSection) -> DebugPolicy {
    DebugPolicy {
        allow_flash: i.allow_flash.as_ref().is_some_and(|a| *a.get_ref()),
        lock_test_address: i.lock_test_address.as_ref().and_then(|a| address(d, a)),
    }
}

/// On a board declaring production firmware, the lock test must read where an unlocked unit
/// answers, or a refusal would prove nothing: a GDB stub also refuses an unmapped address, so
/// a `gdb` port must declare `lock_test_address`; a probe-rs port's (declared or the flash
/// start) must lie in the chip's memory map.
pub(crate) fn check_lock_test_addresses(
    d: &mut Diag,
    raw: &RawBoardFile,
    interfaces: &std::collections::BTreeMap<String, super::Interface>,
) {
    for (name, iface) in interfaces {
        let Some(table) = raw.interfaces.get(name) else {
            continue;
        };
        let declared = table.get_ref().lock_test_address.as_ref();
        match iface {
            super::Interface::Gdb(g) if g.policy.lock_test_address.is_none() => d.at(
                Some(table.span()),
                format!("gdb interface {name:?} needs `lock_test_address` on a board declaring production_firmware = true"),
                Some("the debug-port lock test reads there: give an address an unlocked unit lets the port read, e.g. the start of flash (\"0x08000000\" on an STM32); a stub also refuses unmapped addresses, so a refusal anywhere else proves nothing"),
            ),
            super::Interface::ProbeRs(p) => {
                if let (Some(a), Some(v)) = (p.policy.lock_test_address, declared) {
                    if chip_maps(&p.chip, a) == Some(false) {
                        d.at(
                            Some(v.span()),
                            format!("{a:#010x} is not in {}'s memory map", p.chip),
                            Some("give an address of the chip's flash or RAM (the default is the start of flash)"),
                        );
                    }
                }
            }
            _ => {}
        }
    }
}

/// Whether `address` lies in a region of `chip`'s memory map (`None`: chip unknown).
fn chip_maps(chip: &str, address: u64) -> Option<bool> {
    let target = registry().get_target_by_name(chip).ok()?;
    Some(target.memory_map.iter().any(|r| {
        let range = match r {
            probe_rs::config::MemoryRegion::Nvm(n) => &n.range,
            probe_rs::config::MemoryRegion::Ram(m) => &m.range,
            probe_rs::config::MemoryRegion::Generic(g) => &g.range,
        };
        range.contains(&address)
    }))
}

/// probe-rs's built-in chip descriptions, loaded once (shared with the probe backend).
fn registry() -> &'static probe_rs::config::Registry {
    &crate::iface::probe::REGISTRY
}

/// `kind = "probe-rs"`: chip (known to probe-rs), probe selector, wire protocol, speed.
pub(crate) fn probe_rs_spec(
    d: &mut Diag,
    name: &str,
    i: &InterfaceSection,
    table: Range<usize>,
    timeout: Duration,
    tmpl: Tmpl<'_>,
) -> Option<ProbeRsSpec> {
    let Some(chip) = &i.chip else {
        d.at(
            Some(table),
            format!("probe-rs interface {name:?} needs `chip`: the target as probe-rs names it"),
            Some("e.g. chip = \"STM32F411RETx\"; `probe-rs chip list` lists the names"),
        );
        return None;
    };
    if let Err(msg) = check_chip(chip.get_ref()) {
        d.at(Some(chip.span()), msg, None);
        return None;
    }
    let probe = match &i.probe {
        Some(p) => {
            let t = tmpl(d, p)?;
            // A literal selector is checked now; a templated one when it is rendered.
            if t.vars().next().is_none() {
                if let Err(msg) = check_selector(p.get_ref()) {
                    d.at(
                        Some(p.span()),
                        msg,
                        Some("`hilsec probe list` prints each attached probe's selector"),
                    );
                    return None;
                }
            }
            Some(t)
        }
        None => None,
    };
    let protocol = match &i.protocol {
        None => None,
        Some(p) => match p.get_ref() {
            ProtocolValue::Name(n) if n.eq_ignore_ascii_case("swd") => Some(Protocol::Swd),
            ProtocolValue::Name(n) if n.eq_ignore_ascii_case("jtag") => Some(Protocol::Jtag),
            other => {
                d.at(
                    Some(p.span()),
                    format!("probe-rs interface {name:?}: unknown wire protocol {other:?}"),
                    Some("use protocol = \"swd\" or \"jtag\""),
                );
                return None;
            }
        },
    };
    let speed_khz = match &i.speed_khz {
        Some(s) if *s.get_ref() == 0 || *s.get_ref() > 100_000 => {
            d.at(
                Some(s.span()),
                format!("speed_khz {} is out of range", s.get_ref()),
                Some("give 1 to 100000 kHz; 4000 is a common choice, and probes round to a speed they support"),
            );
            return None;
        }
        Some(s) => Some(*s.get_ref()),
        None => None,
    };
    Some(ProbeRsSpec {
        probe,
        chip: chip.get_ref().clone(),
        protocol,
        speed_khz,
        connect_under_reset: i.connect_under_reset.as_ref().is_some_and(|c| *c.get_ref()),
        core: i.core.as_ref().map_or(0, |c| *c.get_ref()),
        running: i.running.as_ref().is_none_or(|r| *r.get_ref()),
        policy: debug_policy(d, i),
        timeout,
    })
}

/// "START..END" or "START+LENGTH", both ends as addresses.
fn scan_range(d: &mut Diag, v: &Spanned<String>) -> Option<(u64, u64)> {
    let text = v.get_ref();
    let parsed = if let Some((a, b)) = text.split_once("..") {
        match (parse_address(a), parse_address(b)) {
            (Some(a), Some(b)) if b > a => Some((a, b - a)),
            _ => None,
        }
    } else if let Some((a, n)) = text.split_once('+') {
        match (parse_address(a), parse_address(n)) {
            (Some(a), Some(n)) if n > 0 && a.checked_add(n).is_some() => Some((a, n)),
            _ => None,
        }
    } else {
        None
    };
    if parsed.is_none() {
        d.at(
            Some(v.span()),
            format!("{text:?} is not an address range"),
            Some("write \"START..END\" or \"START+LENGTH\", e.g. \"0x20000000+0x20000\""),
        );
    }
    parsed
}

/// `kind = "rtt"`: the debug interface it reads through, and where the control block is.
pub(crate) fn rtt_spec(
    d: &mut Diag,
    name: &str,
    i: &InterfaceSection,
    raw: &RawBoardFile,
    table: Range<usize>,
    timeout: Duration,
) -> Option<RttSpec> {
    let Some(debug) = &i.debug else {
        d.at(
            Some(table),
            format!("rtt interface {name:?} needs `debug`: the debug interface it reads through"),
            Some("add e.g. debug = \"swd\" (an interface of kind \"probe-rs\" or \"gdb\")"),
        );
        return None;
    };
    let debug_kind = raw
        .interfaces
        .get(debug.get_ref())
        .map(|t| t.get_ref().kind.get_ref().clone());
    match debug_kind.as_deref() {
        Some("probe-rs" | "gdb") => {}
        Some(other) => {
            d.at(
                Some(debug.span()),
                format!(
                    "rtt interface {name:?}: {:?} is a {other} interface, not a debug port",
                    debug.get_ref()
                ),
                Some("name an interface of kind \"probe-rs\" or \"gdb\""),
            );
            return None;
        }
        None => {
            d.at(
                Some(debug.span()),
                super::interfaces::missing_iface_msg(debug.get_ref(), raw),
                Some("declare it under [interfaces.NAME] with kind \"probe-rs\" or \"gdb\""),
            );
            return None;
        }
    }
    if let (Some(_), Some(scan)) = (&i.control_block, &i.scan) {
        d.at(
            Some(scan.span()),
            format!("rtt interface {name:?}: give `control_block` or `scan`, not both"),
            Some("with the control block's address known, nothing needs searching"),
        );
        return None;
    }
    let control_block = match &i.control_block {
        Some(c) => Some(address(d, c)?),
        None => None,
    };
    let scan = match &i.scan {
        Some(s) => vec![scan_range(d, s)?],
        None => Vec::new(),
    };
    if control_block.is_none() && scan.is_empty() {
        d.at(
            Some(table),
            format!("rtt interface {name:?} needs `control_block` (its address) or `scan` (where to look for it)"),
            Some("e.g. scan = \"0x20000000+0x20000\" (the chip's RAM), or control_block = the address of _SEGGER_RTT in the firmware's map file"),
        );
        return None;
    }
    let poll = match &i.poll {
        Some(p) => parse_duration(d, p)?,
        None => Duration::from_millis(10),
    };
    if poll.is_zero() || poll > Duration::from_secs(1) {
        d.at(
            i.poll.as_ref().map(|p| p.span()),
            format!("poll {poll:?} is out of range"),
            Some("poll every 1 ms to 1 s; 10 ms is the default"),
        );
        return None;
    }
    Some(RttSpec {
        debug: debug.get_ref().clone(),
        control_block,
        scan,
        up: i.up.as_ref().map_or(0, |u| *u.get_ref()),
        down: i.down.as_ref().map_or(0, |u| *u.get_ref()),
        poll,
        timeout,
    })
}

/// `kind = "power"`: one of the drivers and its keys.
pub(crate) fn power_spec(
    d: &mut Diag,
    name: &str,
    i: &InterfaceSection,
    raw: &RawBoardFile,
    table: Range<usize>,
    timeout: Duration,
    tmpl: Tmpl<'_>,
) -> Option<PowerSpec> {
    let Some(driver) = &i.driver else {
        d.at(
            Some(table),
            format!("power interface {name:?} needs `driver`"),
            Some("use \"command\" (shell commands), \"modbus-coil\" (a relay board), \"tasmota\" (an MQTT smart plug) or \"emulator\""),
        );
        return None;
    };
    // The keys each driver takes; any other power key is refused at its value.
    type DriverKey<'k> = (&'k str, Option<Range<usize>>, &'k [&'k str]);
    let keys: [DriverKey<'_>; 9] = [
        (
            "on_command",
            i.on_command.as_ref().map(|v| v.span()),
            &["command"],
        ),
        (
            "off_command",
            i.off_command.as_ref().map(|v| v.span()),
            &["command"],
        ),
        (
            "cycle_command",
            i.cycle_command.as_ref().map(|v| v.span()),
            &["command"],
        ),
        (
            "address",
            i.address.as_ref().map(|v| v.span()),
            &["modbus-coil"],
        ),
        (
            "unit_id",
            i.unit_id.as_ref().map(|v| v.span()),
            &["modbus-coil"],
        ),
        ("coil", i.coil.as_ref().map(|v| v.span()), &["modbus-coil"]),
        (
            "on_value",
            i.on_value.as_ref().map(|v| v.span()),
            &["modbus-coil"],
        ),
        ("topic", i.topic.as_ref().map(|v| v.span()), &["tasmota"]),
        ("relay", i.relay.as_ref().map(|v| v.span()), &["tasmota"]),
    ];
    let drv = driver.get_ref().as_str();
    for (key, at, drivers) in keys {
        if let Some(at) = at.filter(|_| !drivers.contains(&drv)) {
            d.at(
                Some(at),
                format!("power interface {name:?}: driver {drv:?} does not take `{key}`"),
                Some("see boards/README.md, \"Power control\", for each driver's keys"),
            );
            return None;
        }
    }
    for (key, at) in [
        ("broker", i.broker.as_ref().map(|v| v.span())),
        ("username", i.username.as_ref().map(|v| v.span())),
        ("password", i.password.as_ref().map(|v| v.span())),
    ] {
        if let Some(at) = at.filter(|_| drv != "tasmota") {
            d.at(
                Some(at),
                format!("power interface {name:?}: driver {drv:?} does not take `{key}`"),
                Some("see boards/README.md, \"Power control\", for each driver's keys"),
            );
            return None;
        }
    }
    if let (Some(t), "emulator") = (&i.off_time, drv) {
        d.at(
            Some(t.span()),
            format!("power interface {name:?}: driver \"emulator\" does not take `off_time`"),
            Some("an emulated unit is off only while its process is stopped and started again"),
        );
        return None;
    }
    let off_time = match &i.off_time {
        Some(t) => parse_duration(d, t)?,
        None => Duration::from_secs(2),
    };
    let need = |d: &mut Diag, v: &Option<Spanned<String>>, key: &str, eg: &str| match v {
        Some(v) => tmpl(d, v),
        None => {
            d.at(
                Some(table.clone()),
                format!("power interface {name:?} (driver {drv:?}) needs `{key}`"),
                Some(eg),
            );
            None
        }
    };
    let driver = match drv {
        "command" => {
            let on = need(
                d,
                &i.on_command,
                "on_command",
                "e.g. on_command = \"uhubctl -l 1-1 -p 2 -a on\"",
            );
            let off = need(
                d,
                &i.off_command,
                "off_command",
                "e.g. off_command = \"uhubctl -l 1-1 -p 2 -a off\"",
            );
            let cycle = match &i.cycle_command {
                Some(c) => Some(tmpl(d, c)?),
                None => None,
            };
            PowerDriverSpec::Command {
                on: on?,
                off: off?,
                cycle,
            }
        }
        "modbus-coil" => {
            let address = need(
                d,
                &i.address,
                "address",
                "e.g. address = \"192.168.1.50:502\" (the relay board's Modbus TCP endpoint)",
            )?;
            let Some(coil) = &i.coil else {
                d.at(
                    Some(table),
                    format!("power interface {name:?} (driver \"modbus-coil\") needs `coil`: the relay's coil number"),
                    Some("e.g. coil = 0"),
                );
                return None;
            };
            PowerDriverSpec::ModbusCoil {
                address,
                unit_id: i.unit_id.as_ref().map_or(1, |u| *u.get_ref()),
                coil: *coil.get_ref(),
                on_value: i.on_value.as_ref().is_none_or(|v| *v.get_ref()),
            }
        }
        "tasmota" => {
            let broker = match &i.broker {
                None => MqttBroker::Embedded,
                Some(b) if b.get_ref() == "embedded" => MqttBroker::Embedded,
                Some(a) => MqttBroker::Address(tmpl(d, a)?),
            };
            let topic = need(
                d,
                &i.topic,
                "topic",
                "e.g. topic = \"bench3-plug\" (the plug's Tasmota topic)",
            )?;
            let username = match &i.username {
                Some(u) => Some(tmpl(d, u)?),
                None => None,
            };
            let password = match &i.password {
                Some(p) => Some(tmpl(d, p)?),
                None => None,
            };
            PowerDriverSpec::Tasmota {
                broker,
                topic,
                relay: i.relay.as_ref().map(|r| *r.get_ref()),
                username,
                password,
            }
        }
        "emulator" => {
            if raw.emulator.is_none() {
                d.at(
                    Some(driver.span()),
                    format!("power interface {name:?}: driver \"emulator\" needs an [emulator] section"),
                    Some("a physical unit's power is switched by \"command\", \"modbus-coil\" or \"tasmota\""),
                );
                return None;
            }
            PowerDriverSpec::Emulator
        }
        other => {
            d.at(
                Some(driver.span()),
                format!("power interface {name:?}: unknown driver {other:?}"),
                Some("use \"command\", \"modbus-coil\", \"tasmota\" or \"emulator\""),
            );
            return None;
        }
    };
    Some(PowerSpec {
        driver,
        off_time,
        timeout,
    })
}

/// The start of the first non-volatile (flash) region of `chip`, from probe-rs's chip
/// descriptions: where firmware lives, and what readout protection guards.
pub fn flash_start(chip: &str) -> Option<u64> {
    let target = registry().get_target_by_name(chip).ok()?;
    target.memory_map.iter().find_map(|r| match r {
        probe_rs::config::MemoryRegion::Nvm(n) => Some(n.range.start),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{error, load, HEAD};
    use super::super::{FlashFormat, Interface, PowerDriverSpec, PowerOp, Step};

    const SWD: &str = "\n[interfaces.swd]\nkind = \"probe-rs\"\nchip = \"STM32F411RETx\"\nprobe = \"0483:374b:066DFF48\"\nprotocol = \"swd\"\nspeed_khz = 4000\nallow_flash = true\n";

    #[test]
    fn a_probe_rs_port_an_rtt_console_and_a_power_switch() {
        let text = format!(
            "{HEAD}{SWD}\n[interfaces.rtt]\nkind = \"rtt\"\ndebug = \"swd\"\nscan = \"0x20000000+0x20000\"\n\n[interfaces.power]\nkind = \"power\"\ndriver = \"command\"\non_command = \"relay on\"\noff_command = \"relay off\"\n\n[actions.prepare]\nsteps = [ {{ power = \"cycle\" }}, {{ flash = \"fw.bin\", base = \"0x08000000\", on = \"swd\" }}, {{ send = \"x\", on = \"rtt\" }}, {{ debug = \"reset_halt\", on = \"swd\" }} ]\n"
        );
        let m = load("hardware-ok", &text).expect("loads");
        match &m.interfaces["swd"] {
            Interface::ProbeRs(p) => {
                assert_eq!(p.chip, "STM32F411RETx");
                assert_eq!(p.speed_khz, Some(4000));
                assert!(p.policy.allow_flash && p.running);
            }
            other => panic!("{other:?}"),
        }
        match &m.interfaces["rtt"] {
            Interface::Rtt(r) => {
                assert_eq!(r.debug, "swd");
                assert_eq!(r.scan, [(0x2000_0000, 0x2_0000)]);
                assert_eq!((r.up, r.down), (0, 0));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            &m.interfaces["power"],
            Interface::Power(p) if matches!(p.driver, PowerDriverSpec::Command { .. })
        ));
        let steps = &m.actions["prepare"].steps;
        assert!(
            matches!(&steps[0], Step::Power { on: Some(on), op: PowerOp::Cycle, .. } if on == "power")
        );
        assert!(matches!(
            &steps[1],
            Step::Flash {
                format: None,
                base: Some(0x0800_0000),
                verify: true,
                ..
            }
        ));
        assert_eq!(FlashFormat::from_path("fw.bin"), FlashFormat::Bin);
        assert_eq!(FlashFormat::from_path("fw.HEX"), FlashFormat::Hex);
        assert_eq!(
            FlashFormat::from_path("target/release/fw"),
            FlashFormat::Elf
        );
    }

    #[test]
    fn mistakes_are_reported_at_the_value() {
        for (extra, words) in [
            ("chip = \"STM32F999\"\n", "STM32F999"),
            ("protocol = \"spi\"\n", "unknown wire protocol"),
            ("speed_khz = 0\n", "speed_khz 0 is out of range"),
        ] {
            // The chip first (its own case), else a valid chip after the key under test.
            let text = if extra.starts_with("chip") {
                format!("{HEAD}\n[interfaces.swd]\nkind = \"probe-rs\"\n{extra}")
            } else {
                format!("{HEAD}\n[interfaces.swd]\nkind = \"probe-rs\"\n{extra}chip = \"RP2040\"\n")
            };
            let (line, _, msg, _) = error("probe-bad", &text);
            assert_eq!(line, 10, "{msg}");
            assert!(msg.contains(words), "{msg}");
        }
        let (_, _, msg, _) = error(
            "probe-selector",
            &format!("{HEAD}\n[interfaces.swd]\nkind = \"probe-rs\"\nchip = \"RP2040\"\nprobe = \"stlink\"\n"),
        );
        assert!(msg.contains("stlink"), "{msg}");
        // Flashing needs the port's consent; a power step needs a switch.
        let text = format!(
            "{HEAD}{SWD}\n[actions.a]\non = \"swd\"\nsteps = [ {{ flash = \"fw.elf\" }} ]\n"
        )
        .replace("allow_flash = true\n", "");
        let (_, _, msg, help) = error("no-flash", &text);
        assert!(msg.contains("does not allow flashing"), "{msg}");
        assert!(help.unwrap_or_default().contains("allow_flash = true"));
        let (_, _, msg, _) = error(
            "no-power",
            &format!("{HEAD}\n[actions.a]\nsteps = [ {{ power = \"on\" }} ]\n"),
        );
        assert!(msg.contains("needs a power interface"), "{msg}");
        let (_, _, msg, _) = error(
            "bin-base",
            &format!("{HEAD}{SWD}\n[actions.a]\non = \"swd\"\nsteps = [ {{ flash = \"fw.bin\", format = \"bin\" }} ]\n"),
        );
        assert!(msg.contains("needs `base`"), "{msg}");
        // An RTT console reads through a debug port, and must know where to look.
        let (_, _, msg, _) = error(
            "rtt-not-debug",
            &format!("{HEAD}\n[interfaces.rtt]\nkind = \"rtt\"\ndebug = \"console\"\nscan = \"0x20000000..0x20020000\"\n"),
        );
        assert!(msg.contains("not a debug port"), "{msg}");
        let (_, _, msg, _) = error(
            "rtt-where",
            &format!("{HEAD}{SWD}\n[interfaces.rtt]\nkind = \"rtt\"\ndebug = \"swd\"\n"),
        );
        assert!(msg.contains("`control_block`"), "{msg}");
        let (_, _, msg, _) = error(
            "rtt-range",
            &format!("{HEAD}{SWD}\n[interfaces.rtt]\nkind = \"rtt\"\ndebug = \"swd\"\nscan = \"0x2000..0x1000\"\n"),
        );
        assert!(msg.contains("not an address range"), "{msg}");
        // Power drivers take their own keys only.
        let (_, _, msg, _) = error(
            "power-keys",
            &format!("{HEAD}\n[interfaces.p]\nkind = \"power\"\ndriver = \"tasmota\"\ntopic = \"plug\"\ncoil = 3\n"),
        );
        assert!(msg.contains("does not take `coil`"), "{msg}");
        let (_, _, msg, _) = error(
            "power-emulator",
            &format!("{HEAD}\n[interfaces.p]\nkind = \"power\"\ndriver = \"emulator\"\n"),
        );
        assert!(msg.contains("needs an [emulator] section"), "{msg}");
        let (_, _, msg, _) = error(
            "two-switches",
            &format!("{HEAD}\n[interfaces.p]\nkind = \"power\"\ndriver = \"command\"\non_command = \"a\"\noff_command = \"b\"\n\n[interfaces.q]\nkind = \"power\"\ndriver = \"command\"\non_command = \"a\"\noff_command = \"b\"\n\n[actions.a]\nsteps = [ {{ power = \"off\" }} ]\n"),
        );
        assert!(msg.contains("several power interfaces (p, q)"), "{msg}");
    }

    #[test]
    fn options_that_would_be_ignored_are_refused() {
        let gdb =
            "\n[interfaces.g]\nkind = \"gdb\"\naddress = \"127.0.0.1:3333\"\nallow_flash = true\n";
        for (steps, words) in [
            ("{ send = \"x\", verify = false }", "does not take `verify`"),
            (
                "{ send = \"x\", encoding = \"text\" }",
                "does not take `encoding`",
            ),
            (
                "{ power = \"on\", timeout = \"1s\" }",
                "does not take `timeout`",
            ),
            (
                "{ flash = \"fw.elf\", base = \"0x0\", on = \"swd\" }",
                "`base` is only for raw binaries",
            ),
            ("{ flash = \"fw.bin\", on = \"swd\" }", "needs `base`"),
            (
                "{ flash = \"fw.elf\", on = \"g\" }",
                "has no `reset_command`",
            ),
            ("{ debug = \"reset\", on = \"g\" }", "cannot reset"),
        ] {
            let text = format!(
                "{HEAD}{SWD}{gdb}\n[interfaces.power]\nkind = \"power\"\ndriver = \"command\"\non_command = \"a\"\noff_command = \"b\"\n\n[actions.a]\nsteps = [ {steps} ]\n"
            );
            let (_, _, msg, _) = error("ignored", &text);
            assert!(msg.contains(words), "{steps}: {msg}");
        }
        let (_, _, msg, _) = error(
            "rtt-both",
            &format!("{HEAD}{SWD}\n[interfaces.rtt]\nkind = \"rtt\"\ndebug = \"swd\"\ncontrol_block = \"0x20000400\"\nscan = \"0x20000000+0x1000\"\n"),
        );
        assert!(msg.contains("not both"), "{msg}");
        let (_, _, msg, _) = error(
            "pw-stray",
            &format!("{HEAD}{SWD}\n[[unit]]\nname = \"u\"\npassword = {{ memory = \"0x1fff7800\", length = 8, capture = \"pw\" }}\n"),
        );
        assert!(msg.contains("`capture` does not go"), "{msg}");
        // A production board's lock test must read where an unlocked unit answers.
        let prod = "[declarations]\nproduction_firmware = true\n";
        let (_, _, msg, _) = error("lock-gdb", &format!("{HEAD}{prod}{gdb}"));
        assert!(msg.contains("needs `lock_test_address`"), "{msg}");
        let (_, _, msg, _) = error(
            "lock-map",
            &format!("{HEAD}{prod}{SWD}lock_test_address = \"0xf0000000\"\n"),
        );
        assert!(msg.contains("not in STM32F411RETx's memory map"), "{msg}");
    }

    #[test]
    fn the_lock_test_reads_where_the_chip_keeps_its_firmware() {
        assert_eq!(super::flash_start("STM32F411RETx"), Some(0x0800_0000));
        assert_eq!(super::flash_start("nRF52840_xxAA"), Some(0));
        assert_eq!(super::flash_start("RP2040"), Some(0x1000_0000));
        assert_eq!(super::flash_start("no such chip"), None);
    }

    #[test]
    fn a_password_in_memory_names_a_debug_port() {
        let unit = |pw: &str| format!("{HEAD}{SWD}\n[[unit]]\nname = \"u\"\npassword = {pw}\n");
        let m = load(
            "pw-memory",
            &unit("{ memory = \"0x1fff7800\", length = 32 }"),
        );
        assert!(m.is_ok(), "the only debug port is the default: {m:?}");
        let (_, _, msg, _) = error(
            "pw-memory-console",
            &unit("{ memory = \"0x1fff7800\", length = 32, on = \"console\" }"),
        );
        assert!(msg.contains("not a debug interface"), "{msg}");
        let (_, _, msg, _) = error("pw-memory-length", &unit("{ memory = \"0x1fff7800\" }"));
        assert!(msg.contains("needs `length`"), "{msg}");
    }
}
