//! `run --shard I/N`: which models this shard runs.
//!
//! A model's units stay in one shard, since the per-model tests (uniqueness, derivation) judge
//! all of them together. The split depends only on the models' names and unit counts, never on
//! file order or the host, so every runner of a CI matrix computes the same split from the same
//! board files: models are taken largest first (ties by name) and each goes to the shard with
//! the fewest units so far (ties to the lowest index), which keeps shards even.

use hilsec_core::board::Board;

/// Shard `index` (1-based) of `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl Shard {
    /// Parses `I/N` with 1 ≤ I ≤ N.
    pub fn parse(s: &str) -> Result<Shard, String> {
        let help = "write I/N with 1 <= I <= N, e.g. 2/4 for the second of four shards";
        let (i, n) = s
            .split_once('/')
            .ok_or_else(|| format!("{s:?} is not a shard; {help}"))?;
        let index: usize = i
            .trim()
            .parse()
            .map_err(|_| format!("{s:?}: {i:?} is not a number; {help}"))?;
        let count: usize = n
            .trim()
            .parse()
            .map_err(|_| format!("{s:?}: {n:?} is not a number; {help}"))?;
        if count == 0 || index == 0 || index > count {
            return Err(format!("{s:?} is out of range; {help}"));
        }
        Ok(Shard { index, count })
    }

    /// The boards (one per model) this shard runs, in their original order.
    pub fn select(&self, boards: Vec<Board>) -> Vec<Board> {
        let assignment = assign(
            &boards
                .iter()
                .map(|b| (b.model.name.as_str(), b.units.len()))
                .collect::<Vec<_>>(),
            self.count,
        );
        boards
            .into_iter()
            .zip(assignment)
            .filter(|(_, shard)| *shard == self.index - 1)
            .map(|(b, _)| b)
            .collect()
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// For each model (name, units), the 0-based shard it goes to.
fn assign(models: &[(&str, usize)], count: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..models.len()).collect();
    order.sort_by(|&a, &b| {
        models[b]
            .1
            .cmp(&models[a].1)
            .then_with(|| models[a].0.cmp(models[b].0))
    });
    // More shards than models: the extra ones stay empty (and N may be huge).
    let mut load = vec![0usize; count.min(models.len()).max(1)];
    let mut out = vec![0usize; models.len()];
    for i in order {
        let (shard, _) = load
            .iter()
            .enumerate()
            .min_by_key(|(idx, units)| (**units, *idx))
            .unwrap_or((0, &0));
        out[i] = shard;
        load[shard] += models[i].1.max(1);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_refuses() {
        assert_eq!(Shard::parse("2/4"), Ok(Shard { index: 2, count: 4 }));
        for bad in ["0/4", "5/4", "1/0", "x/2", "3", "1/2/3", ""] {
            assert!(Shard::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn every_model_in_exactly_one_shard_and_even() {
        let models: Vec<(String, usize)> =
            (0..37).map(|i| (format!("m{i:02}"), 1 + i % 3)).collect();
        let view: Vec<(&str, usize)> = models.iter().map(|(n, u)| (n.as_str(), *u)).collect();
        let a = assign(&view, 4);
        let mut load = [0usize; 4];
        for (i, s) in a.iter().enumerate() {
            load[*s] += view[i].1;
        }
        let (min, max) = (load.iter().min().unwrap(), load.iter().max().unwrap());
        assert!(max - min <= 3, "uneven split {load:?}");
    }

    #[test]
    fn split_does_not_depend_on_file_order() {
        let fwd = [("a", 2), ("b", 2), ("c", 1), ("d", 3)];
        let mut rev = fwd;
        rev.reverse();
        let a = assign(&fwd, 3);
        let b = assign(&rev, 3);
        for (i, (name, _)) in fwd.iter().enumerate() {
            let j = rev.iter().position(|(n, _)| n == name).unwrap();
            assert_eq!(a[i], b[j], "{name} moved");
        }
    }

    #[test]
    fn more_shards_than_models_leaves_some_empty() {
        let a = assign(&[("a", 2), ("b", 2)], 4);
        assert_eq!(a, vec![0, 1]);
        let a = assign(&[("a", 2), ("b", 2)], usize::MAX);
        assert_eq!(a, vec![0, 1]);
    }
}
