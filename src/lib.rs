pub mod proto {
    tonic::include_proto!("aicr.v1");
}
