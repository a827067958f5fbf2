#include "passes/PassManager.h"

namespace roformer::passes {

std::string defaultPipeline() {
  // Names and input shapes first, because shape folding depends on the fixed
  // dims. The simplifications enable each other (a folded Shape makes a
  // Reshape shape constant, which makes two Transposes cancel, ...), so they
  // repeat until none changes the graph. The fusions then match the
  // simplified graph.
  return "sanitize-names,set-input-shape,"
         "fixpoint(infer-shapes,fold-constants,eliminate-identities,cse,simplify-reshapes,dce),"
         "fuse-layernorm,dce";
}

}  // namespace roformer::passes
