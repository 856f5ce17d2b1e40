//! The plugin binary Terraform starts: `terraform-provider-sluice`. See `deploy/terraform/`.

fn main() -> anyhow::Result<()> {
    // tf-provider appends a captured backtrace to every diagnostic's detail when backtraces
    // are on (RUST_BACKTRACE=1 in many shells). Terraform prints that detail, and its crash
    // detector (panicwrap) takes the "panic::" in the frames for a crash of its own. Library
    // backtraces off; panics still print theirs. Set before any thread exists.
    std::env::set_var("RUST_LIB_BACKTRACE", "0");
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(tf_provider::serve(
            "sluice",
            terraform_provider_sluice::SluiceProvider::default(),
        ))
}
