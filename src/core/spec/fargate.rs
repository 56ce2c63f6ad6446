//! Fargate task sizes: which CPU/memory pairs AWS accepts.

/// The memory values (MiB) valid with `cpu` units, or `None` for an invalid CPU value.
pub fn memory_options(cpu: u32) -> Option<Vec<u32>> {
    let (from, to, step) = match cpu {
        256 => return Some(vec![512, 1024, 2048]),
        512 => (1024, 4096, 1024),
        1024 => (2048, 8192, 1024),
        2048 => (4096, 16384, 1024),
        4096 => (8192, 30720, 1024),
        8192 => (16384, 61440, 4096),
        16384 => (32768, 122880, 8192),
        _ => return None,
    };
    Some((from..=to).step_by(step as usize).collect())
}

pub const CPU_VALUES: [u32; 7] = [256, 512, 1024, 2048, 4096, 8192, 16384];

/// `Ok(())` for a valid pair, else the message to show.
pub fn check(cpu: u32, memory: u32) -> Result<(), String> {
    let Some(options) = memory_options(cpu) else {
        return Err(format!(
            "cpu {cpu} is not a Fargate task size; use one of {}",
            CPU_VALUES.map(|c| c.to_string()).join(", ")
        ));
    };
    if options.contains(&memory) {
        return Ok(());
    }
    let (lo, hi) = (options[0], options[options.len() - 1]);
    let step = if options.len() > 1 { options[1] - options[0] } else { 0 };
    if options.windows(2).all(|w| w[1] - w[0] == step) {
        Err(format!(
            "memory {memory} MiB is not valid with cpu {cpu} on Fargate: use {lo} to {hi} MiB in steps of {step}"
        ))
    } else {
        let list = options.iter().map(u32::to_string).collect::<Vec<_>>().join(", ");
        Err(format!("memory {memory} MiB is not valid with cpu {cpu} on Fargate: use one of {list} MiB"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs() {
        assert!(check(256, 512).is_ok());
        assert!(check(256, 2048).is_ok());
        assert!(check(256, 4096).is_err());
        assert!(check(4096, 30720).is_ok());
        assert!(check(8192, 20480).is_ok());
        assert!(check(8192, 18432).is_err());
        assert!(check(300, 512).is_err());
    }
}
