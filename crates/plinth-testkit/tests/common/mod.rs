//! Verification shared by the integration tests, written against Sequoia
//! directly so that it does not depend on plinth.

#![allow(dead_code)]

use std::io::Read;

use sequoia_openpgp as openpgp;

use openpgp::parse::Parse;
use openpgp::parse::stream::{MessageLayer, MessageStructure, VerificationHelper, VerifierBuilder};
use openpgp::policy::StandardPolicy;
use openpgp::{Cert, KeyHandle};

struct Helper {
    certs: Vec<Cert>,
    good: usize,
}

impl VerificationHelper for &mut Helper {
    fn get_certs(&mut self, _ids: &[KeyHandle]) -> openpgp::Result<Vec<Cert>> {
        Ok(self.certs.clone())
    }

    fn check(&mut self, structure: MessageStructure) -> openpgp::Result<()> {
        for layer in structure {
            if let MessageLayer::SignatureGroup { results } = layer {
                self.good += results.iter().filter(|r| r.is_ok()).count();
            }
        }
        if self.good == 0 {
            return Err(anyhow_error("no good signature"));
        }
        Ok(())
    }
}

fn anyhow_error(msg: &str) -> openpgp::anyhow::Error {
    openpgp::Error::InvalidOperation(msg.to_owned()).into()
}

/// The signed text and the number of good signatures, verifying as of now.
pub fn verify(signed: &[u8], public_keys: &[&[u8]]) -> openpgp::Result<(Vec<u8>, usize)> {
    let policy = StandardPolicy::new();
    let mut helper = Helper {
        certs: public_keys
            .iter()
            .map(Cert::from_bytes)
            .collect::<openpgp::Result<_>>()?,
        good: 0,
    };
    let mut verifier =
        VerifierBuilder::from_bytes(signed)?.with_policy(&policy, None, &mut helper)?;
    let mut text = Vec::new();
    verifier.read_to_end(&mut text)?;
    drop(verifier);
    Ok((text, helper.good))
}
