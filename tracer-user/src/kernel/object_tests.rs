//! The guard between the eBPF object and the tables user space loads it
//! from (`tracer_common::programs`, `tracer_common::maps::names`): aya's
//! macros take each program's name and attach point as literals in
//! tracer-ebpf, so nothing but this test keeps them equal to the tables.
//!
//! The object is parsed, not loaded: no root, no kernel needed. A build
//! with `AYA_BUILD_SKIP` has no object, and then there is nothing to check.

use std::collections::{BTreeMap, BTreeSet};

use object::{Object as _, ObjectSection as _, ObjectSymbol as _, SymbolKind};
use tracer_common::{
    maps::names,
    programs::{Hook, PROGRAMS},
};

use super::loader::EBPF_OBJECT;

/// The object's global symbols of `kind`: name → the section they are in.
fn global_symbols(kind: SymbolKind) -> BTreeMap<String, String> {
    let file = object::File::parse(EBPF_OBJECT).expect("the eBPF object is an ELF file");
    file.symbols()
        .filter(|s| s.is_global() && s.kind() == kind)
        .filter_map(|s| {
            let section = file.section_by_index(s.section_index()?).ok()?;
            Some((s.name().ok()?.to_owned(), section.name().ok()?.to_owned()))
        })
        .collect()
}

/// The section aya-ebpf's macros put a program with this hook in.
fn section_of(hook: Hook) -> String {
    match hook {
        Hook::TracePoint { category, name } => format!("tracepoint/{category}/{name}"),
        Hook::BtfTracePoint(name) => format!("tp_btf/{name}"),
        Hook::UProbe(_) | Hook::GoProbe => "uprobe".to_owned(),
        Hook::URetProbe => "uretprobe".to_owned(),
    }
}

fn built() -> bool {
    if EBPF_OBJECT.is_empty() {
        eprintln!("built with AYA_BUILD_SKIP: no eBPF object to check");
        return false;
    }
    true
}

/// Differences of two name sets, for the failure message.
fn diff(table: &BTreeSet<&str>, object: &BTreeSet<&str>) -> String {
    format!(
        "in the table but not in the object: {:?}; in the object but not in the table: {:?}",
        table.difference(object).collect::<Vec<_>>(),
        object.difference(table).collect::<Vec<_>>()
    )
}

#[test]
fn every_program_of_the_object_is_in_the_table_with_its_hook() {
    if !built() {
        return;
    }
    // Programs are the global functions outside `.text` (where the
    // compiler's helpers, memcpy and the like, live).
    let object: BTreeMap<String, String> = global_symbols(SymbolKind::Text)
        .into_iter()
        .filter(|(_, section)| section != ".text")
        .collect();
    let in_object: BTreeSet<&str> = object.keys().map(String::as_str).collect();
    let in_table: BTreeSet<&str> = PROGRAMS.iter().map(|p| p.name).collect();
    assert_eq!(in_table, in_object, "{}", diff(&in_table, &in_object));
    for program in PROGRAMS {
        assert_eq!(
            object[program.name],
            section_of(program.hook),
            "{}: the object's section (left) is not the table's hook (right)",
            program.name
        );
    }
}

#[test]
fn every_map_of_the_object_is_in_the_table() {
    if !built() {
        return;
    }
    let data = global_symbols(SymbolKind::Data);
    let in_object: BTreeSet<&str> = data
        .iter()
        .filter(|(_, section)| *section == "maps" || *section == ".maps")
        .map(|(name, _)| name.as_str())
        .collect();
    let in_table: BTreeSet<&str> = names::ALL.into_iter().collect();
    assert_eq!(in_table, in_object, "{}", diff(&in_table, &in_object));
    let config = data.get(names::CONFIG).map(String::as_str);
    assert!(
        config.is_some_and(|s| s.starts_with(".rodata") || s.starts_with(".data")),
        "the {} global is not in the object's global data: {config:?}",
        names::CONFIG
    );
}
