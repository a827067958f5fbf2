// Factories of every pass; passes/Registry.cpp lists them by flag name.
#pragma once

#include <memory>

#include "passes/Pass.h"

namespace roformer::passes {

std::unique_ptr<Pass> createConvertFp16Pass();
std::unique_ptr<Pass> createCsePass();
std::unique_ptr<Pass> createDcePass();
std::unique_ptr<Pass> createEliminateIdentitiesPass();
std::unique_ptr<Pass> createFoldConstantsPass();
std::unique_ptr<Pass> createInferShapesPass();
std::unique_ptr<Pass> createFuseRotaryAttentionPass();
std::unique_ptr<Pass> createFuseGeluPass();
std::unique_ptr<Pass> createFuseLayerNormPass();
std::unique_ptr<Pass> createFuseSkipLayerNormPass();
std::unique_ptr<Pass> createPackQkvPass();
std::unique_ptr<Pass> createSanitizeNamesPass();
std::unique_ptr<Pass> createSetInputShapePass();
std::unique_ptr<Pass> createSimplifyReshapesPass();
std::unique_ptr<Pass> createTopoSortPass();

}  // namespace roformer::passes
