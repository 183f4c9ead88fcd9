//! The checksummed regions of a data file's payload: one per item and per
//! key group, tiling the payload.

use super::super::{KeyedSection, StateMeta};
use super::format::DATA_HEADER_LEN;
use crate::error::StateError;
use crate::keygroup::KeyGroup;

/// What a CRC-32C covers: one item of one operator state, or one key group
/// (every keyed state's section of it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum RegionKind {
    Item { state: usize, index: u64 },
    KeyGroup(KeyGroup),
}

/// A checksummed byte range of a payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Region {
    pub(super) start: u64,
    pub(super) end: u64,
    pub(super) crc: u32,
    pub(super) kind: RegionKind,
}

impl Region {
    pub(super) fn describe(&self, states: &[StateMeta]) -> String {
        match self.kind {
            RegionKind::Item { state, index } => {
                format!("item {index} of state `{}`", states[state].name)
            }
            RegionKind::KeyGroup(kg) => format!("key group {kg}"),
        }
    }
}

/// Sorts `regions` and checks that they cover `0..len` without gaps or
/// overlaps, so that every payload byte is under exactly one CRC.
pub(super) fn check_tiling(regions: &mut [Region], len: u64) -> Result<(), String> {
    regions.sort_by_key(|r| (r.start, r.end, r.kind));
    let mut pos = 0;
    for r in regions.iter() {
        if r.start > r.end {
            return Err(format!(
                "region {}..{} ends before it starts",
                r.start, r.end
            ));
        }
        if r.start != pos {
            return Err(format!(
                "the payload's items and key groups leave bytes {}..{} {}",
                pos.min(r.start),
                pos.max(r.start),
                if r.start > pos {
                    "uncovered"
                } else {
                    "covered twice"
                }
            ));
        }
        pos = r.end;
    }
    if pos != len {
        return Err(format!(
            "the payload's items and key groups cover {pos} of its {len} bytes"
        ));
    }
    Ok(())
}

pub(super) fn collect_regions(
    states: &[StateMeta],
    keyed: Option<&KeyedSection>,
    out: &mut Vec<Region>,
) {
    for (s, meta) in states.iter().enumerate() {
        for i in 0..meta.len() {
            let r = meta.item_range(i).expect("item in range");
            out.push(Region {
                start: r.start,
                end: r.end,
                crc: 0,
                kind: RegionKind::Item {
                    state: s,
                    index: i as u64,
                },
            });
        }
    }
    if let Some(k) = keyed {
        for kg in k.key_groups() {
            let r = k.key_group_range(kg).expect("owned key group");
            out.push(Region {
                start: r.start,
                end: r.end,
                crc: 0,
                kind: RegionKind::KeyGroup(kg),
            });
        }
    }
}

/// Checks the CRC of every region in `regions` against `bytes`, which hold
/// the payload from offset `base` on.
pub(super) fn check_regions(
    regions: &[Region],
    states: &[StateMeta],
    bytes: &[u8],
    base: u64,
    path: &str,
) -> Result<(), StateError> {
    for r in regions {
        let slice = &bytes[(r.start - base) as usize..(r.end - base) as usize];
        let crc = crc32c::crc32c(slice);
        if crc != r.crc {
            return Err(StateError::Corrupt {
                path: path.to_owned(),
                offset: DATA_HEADER_LEN + r.start,
                expected: format!(
                    "CRC-32C {:#010x} of {} (bytes {}..{} of the file)",
                    r.crc,
                    r.describe(states),
                    DATA_HEADER_LEN + r.start,
                    DATA_HEADER_LEN + r.end
                ),
                found: format!("{crc:#010x}"),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region(start: u64, end: u64, n: u32) -> Region {
        Region {
            start,
            end,
            crc: 0,
            kind: RegionKind::KeyGroup(n),
        }
    }

    #[test]
    fn tiling_detects_gaps_overlaps_and_short_cover() {
        let mut ok = vec![region(3, 5, 1), region(0, 3, 0), region(5, 5, 2)];
        check_tiling(&mut ok, 5).unwrap();
        assert!(check_tiling(&mut [region(0, 2, 0), region(3, 5, 1)], 5).is_err());
        assert!(check_tiling(&mut [region(0, 3, 0), region(2, 5, 1)], 5).is_err());
        assert!(check_tiling(&mut [region(0, 3, 0)], 5).is_err());
        assert!(check_tiling(&mut [], 1).is_err());
        check_tiling(&mut [], 0).unwrap();
    }
}
