#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "passes/Passes.h"

namespace roformer::passes {

const std::vector<RegisteredPass>& registeredPasses() {
  static const std::vector<RegisteredPass> passes = [] {
    std::vector<PassFactory> factories = {
        createConvertFp16Pass,
        createCsePass,
        createDcePass,
        createEliminateIdentitiesPass,
        createFoldConstantsPass,
        createInferShapesPass,
        createFuseRotaryAttentionPass,
        createFuseGeluPass,
        createFuseLayerNormPass,
        createFuseSkipLayerNormPass,
        createPackQkvPass,
        createSanitizeNamesPass,
        createSetInputShapePass,
        createSimplifyReshapesPass,
        createTopoSortPass,
    };
    std::vector<RegisteredPass> out;
    for (const auto& factory : factories) {
      auto pass = factory();
      out.push_back(RegisteredPass{std::string(pass->name()), std::string(pass->summary()),
                                   factory});
    }
    std::sort(out.begin(), out.end(),
              [](const auto& a, const auto& b) { return a.name < b.name; });
    return out;
  }();
  return passes;
}

absl::StatusOr<std::unique_ptr<Pass>> createPass(std::string_view name) {
  for (const auto& entry : registeredPasses()) {
    if (entry.name == name) return entry.factory();
  }
  std::vector<std::string> names;
  for (const auto& entry : registeredPasses()) names.push_back(entry.name);
  return absl::NotFoundError(absl::StrCat("unknown pass '", std::string(name), "'; known passes: ",
                                          absl::StrJoin(names, ", "),
                                          " (see --list-passes)"));
}

}  // namespace roformer::passes
