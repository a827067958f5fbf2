#include "passes/PassManager.h"

namespace roformer::passes {

std::string defaultPipeline() {
  // TODO: grows into the full deployment pipeline (name sanitizing, input
  // shapes, simplification to a fixpoint, fusions) as those passes land.
  return "topo-sort,dce";
}

}  // namespace roformer::passes
