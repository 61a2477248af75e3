//! Scale mode.

use std::time::{Duration, Instant};

use dataverse_sim::{GenerateSpec, Simulator, Transport};

use crate::common::start_with;

#[tokio::test]
async fn scale_mode_seeds_50k_contacts_quickly_and_serves_5000_row_pages() {
    let started = Instant::now();
    let env = start_with(Simulator::builder().transport(Transport::Http).generate(GenerateSpec {
        contacts: 50_000,
        mentors: 5_000,
        seed: 1,
    }))
    .await;
    assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
    assert_eq!(env.sim.state().row_count("contacts"), Some(50_000));
    let r = env
        .get("contacts?$select=hlf_membernumber&$filter=hlf_showonpublicsite%20eq%20true&$count=true")
        .await;
    assert_eq!(r.json()["@odata.count"], 5000);
    let mut url = env.url("contacts?$select=hlf_membernumber,firstname");
    let mut rows = 0;
    let mut pages = 0;
    while pages < 3 {
        let r = env.get(&url).await;
        let v = r.json();
        rows += v["value"].as_array().unwrap().len();
        pages += 1;
        url = v["@odata.nextLink"].as_str().unwrap().to_owned();
    }
    assert_eq!(rows, 15_000);
    let stats = env.sim.stats();
    assert!(stats.rows >= 15_000 && stats.requests >= 4, "{stats:?}");
    let r = reqwest::get(format!("{}/_sim/stats", env.sim.base_url()))
        .await
        .unwrap();
    let v: serde_json::Value = r.json().await.unwrap();
    assert!(v["rows_per_second"].as_f64().unwrap() > 0.0);
}

#[tokio::test]
async fn generator_is_deterministic_for_a_seed() {
    let a = Simulator::builder()
        .transport(Transport::Http)
        .generate(GenerateSpec {
            contacts: 10,
            mentors: 2,
            seed: 9,
        })
        .start()
        .await
        .unwrap();
    let b = Simulator::builder()
        .transport(Transport::Http)
        .generate(GenerateSpec {
            contacts: 10,
            mentors: 2,
            seed: 9,
        })
        .start()
        .await
        .unwrap();
    let strip = |rows: Vec<serde_json::Value>| -> Vec<serde_json::Value> {
        rows.into_iter()
            .map(|mut r| {
                r.as_object_mut()
                    .unwrap()
                    .retain(|k, _| k != "createdon" && k != "modifiedon");
                r
            })
            .collect()
    };
    assert_eq!(strip(a.state().rows("contacts")), strip(b.state().rows("contacts")));
}
