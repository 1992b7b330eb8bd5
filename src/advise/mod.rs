//! The MLX memory guide's sizing rules: `headroom advise` (estimate,
//! machine, model, report). What it reads off a command line (`--cmd`)
//! comes from `crate::cmdline`, the same rules the daemon's notices use.

pub mod estimate;
pub mod folder;
pub mod machine;
pub mod model;
pub mod render;
pub mod report;

pub use report::Request;

/// `headroom advise`: sample this machine, read the model, answer.
pub fn run(req: &Request, cfg: &crate::config::Config, json: bool) -> Result<String, crate::Error> {
    let flags = req
        .cmd
        .as_deref()
        .map(crate::cmdline::TrainFlags::from_cmdline);
    let (model, cmd_bits) = match (&req.model, &flags) {
        // A name advise cannot size is an error for --model (with the
        // folder/size/name hint), only a missing estimate for --cmd.
        (Some(m), _) => match report::model_from_name(m)? {
            (None, _) => (Some(model::resolve(m)?), None),
            found => found,
        },
        (None, Some(f)) => match f.model.as_deref() {
            Some(m) => report::model_from_name(m)?,
            None => (None, None),
        },
        (None, None) => (None, None),
    };
    let mut checked = report::check(req, flags.as_ref())?;
    checked.bits = checked.bits.or(cmd_bits);
    let machine = machine::this_machine(cfg)?;
    let answer = report::advise(machine, model, &checked, flags.as_ref());
    if json {
        let v = serde_json::to_value(&answer).map_err(|e| crate::Error::Data(e.to_string()))?;
        return Ok(format!("{v:#}\n"));
    }
    Ok(render::render(&answer))
}
