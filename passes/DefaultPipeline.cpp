#include "passes/PassManager.h"

namespace roformer::passes {

std::string defaultPipeline() {
  // Names and input shapes first, because shape folding depends on the fixed
  // dims. The simplifications enable each other (a folded Shape makes a
  // Reshape shape constant, which makes two Transposes cancel, ...), so they
  // repeat until none changes the graph. The fusions then match the
  // simplified graph. fuse-layernorm goes first because it may convert the
  // model to opset 17, which ONNX's converter cannot do once contrib ops
  // exist. fuse-skip-layernorm needs provably equal residual shapes, which
  // the Einsum form of the attention only gets once the attention is fused
  // and shapes are inferred again, so it runs after fuse-rotary-attention
  // and an infer-shapes. pack-qkv merges the projections the attention
  // fusion left as three MatMuls.
  return "sanitize-names,set-input-shape,"
         "fixpoint(infer-shapes,fold-constants,eliminate-identities,cse,simplify-reshapes,dce),"
         "fuse-layernorm,fuse-gelu,fuse-rotary-attention,infer-shapes,fuse-skip-layernorm,"
         "pack-qkv,dce";
}

}  // namespace roformer::passes
