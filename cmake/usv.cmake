# Shared helpers for usview targets.

set(USV_SHARED_DIR "${CMAKE_SOURCE_DIR}/../shared" CACHE PATH "Shared data folder used by tests")

if(USV_SANITIZE)
  add_compile_options(-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined)
  add_link_options(-fsanitize=address,undefined)
endif()

# usv_warnings(<target>): the warning set every target is built with.
function(usv_warnings tgt)
  get_target_property(_type ${tgt} TYPE)
  target_compile_options(${tgt} PRIVATE
    $<$<COMPILE_LANGUAGE:C>:-Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wno-unused-parameter -Werror=implicit-function-declaration -Wvla>
    $<$<COMPILE_LANGUAGE:CXX>:-Wall -Wextra -Wno-unused-parameter>)
endfunction()

# usv_unit_test(<name> SOURCES ... LIBS ...): a cmocka unit test registered with ctest
# under the label "unit".
function(usv_unit_test name)
  cmake_parse_arguments(T "" "" "SOURCES;LIBS" ${ARGN})
  add_executable(${name} ${T_SOURCES})
  target_link_libraries(${name} PRIVATE ${T_LIBS} PkgConfig::CMOCKA)
  usv_warnings(${name})
  add_test(NAME ${name} COMMAND ${name})
  set_tests_properties(${name} PROPERTIES LABELS unit
    ENVIRONMENT "USV_SHARED_DIR=${USV_SHARED_DIR};USV_SOURCE_DIR=${CMAKE_SOURCE_DIR};USV_BINARY_DIR=${CMAKE_BINARY_DIR}")
endfunction()

# usv_integration_test(<name> COMMAND ...): a ctest integration test (label "integration").
function(usv_integration_test name)
  cmake_parse_arguments(T "" "TIMEOUT" "COMMAND" ${ARGN})
  if(NOT T_TIMEOUT)
    set(T_TIMEOUT 600)
  endif()
  add_test(NAME ${name} COMMAND ${T_COMMAND})
  set_tests_properties(${name} PROPERTIES LABELS integration TIMEOUT ${T_TIMEOUT}
    ENVIRONMENT "USV_SHARED_DIR=${USV_SHARED_DIR};USV_SOURCE_DIR=${CMAKE_SOURCE_DIR};USV_BINARY_DIR=${CMAKE_BINARY_DIR};USVIEW=$<TARGET_FILE:usview>;USVIEWD=$<TARGET_FILE:usviewd>")
endfunction()
