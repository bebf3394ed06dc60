// ModelInfo (the wire's description of a teacher's model) <-> ViTConfig
// (common/vit_config.h), in one place: the teacher fills its ModelInfo from
// its config, and a student rebuilds the teacher's architecture from it.
// The wire carries what a client needs to cut patches, check it talks to
// the right model and count FLOPs; training-only fields (qkv_bias,
// init_values, no_embed_class, drop_path_rate) do not travel and come back
// as ViTConfig's defaults.
#ifndef MKD_PROTO_MODEL_INFO_H_
#define MKD_PROTO_MODEL_INFO_H_

#include "common/vit_config.h"
#include "maskedkd/v1/teacher.pb.h"

namespace mkd::proto {

// Sets the architecture fields of `*info` (img_size through
// num_prefix_tokens, and the `architecture` text); leaves the serving
// fields (model_id, device, limits, host) to the caller.
void SetModelArchitecture(const ViTConfig& config, maskedkd::v1::ModelInfo* info);

// The architecture `info` describes, named after its model_id.
ViTConfig ViTConfigFromModelInfo(const maskedkd::v1::ModelInfo& info);

}  // namespace mkd::proto

#endif  // MKD_PROTO_MODEL_INFO_H_
