# Shared helpers for usview targets.

set(USV_SHARED_DIR "${CMAKE_SOURCE_DIR}/../shared" CACHE PATH "Shared data folder used by tests")

# Sanitizer builds (scripts/test.sh runs both): USV_SANITIZE is AddressSanitizer
# with UndefinedBehaviorSanitizer, USV_TSAN is ThreadSanitizer. The two runtimes
# cannot be combined in one process.
if(USV_SANITIZE AND USV_TSAN)
  message(FATAL_ERROR "USV_SANITIZE and USV_TSAN are mutually exclusive: use two build folders")
endif()
if(USV_SANITIZE)
  add_compile_options(-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined)
  add_link_options(-fsanitize=address,undefined)
endif()
if(USV_TSAN)
  add_compile_options(-fsanitize=thread -fno-omit-frame-pointer)
  add_link_options(-fsanitize=thread)
endif()

# USV_FUZZ: the libFuzzer build of tests/fuzz (bench/fuzz.sh). Needs clang
# (-DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++); every library is
# instrumented for coverage with AddressSanitizer and UBSan, and only the
# harnesses link libFuzzer (target usv_fuzz).
option(USV_FUZZ "Build the libFuzzer harnesses of tests/fuzz (clang only)" OFF)
if(USV_FUZZ)
  if(NOT CMAKE_C_COMPILER_ID STREQUAL "Clang" OR NOT CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
    message(FATAL_ERROR "USV_FUZZ needs -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++")
  endif()
  if(USV_SANITIZE OR USV_TSAN)
    message(FATAL_ERROR "USV_FUZZ brings its own sanitizers: leave USV_SANITIZE and USV_TSAN off")
  endif()
  add_compile_options(-fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer
    -fno-sanitize-recover=undefined)
  add_link_options(-fsanitize=address,undefined)
endif()

# usv_warnings(<target>): the warning set every target is built with.
function(usv_warnings tgt)
  get_target_property(_type ${tgt} TYPE)
  target_compile_options(${tgt} PRIVATE
    $<$<COMPILE_LANGUAGE:C>:-Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wno-unused-parameter -Werror=implicit-function-declaration -Wvla>
    $<$<COMPILE_LANGUAGE:CXX>:-Wall -Wextra -Wno-unused-parameter>)
endfunction()

# usv_tsan_tests: builds only the tests labelled "tsan" (and what they need), so
# that the ThreadSanitizer build compiles no more than it runs:
#   cmake --build build-tsan --target usv_tsan_tests && ctest --test-dir build-tsan -L tsan
add_custom_target(usv_tsan_tests)

# usv_unit_test(<name> [TSAN] SOURCES ... LIBS ...): a cmocka unit test registered
# with ctest under the label "unit"; TSAN adds the label "tsan" for tests of
# threaded code (worker, sender, SCP) that the ThreadSanitizer build runs.
function(usv_unit_test name)
  cmake_parse_arguments(T "TSAN" "" "SOURCES;LIBS" ${ARGN})
  add_executable(${name} ${T_SOURCES})
  target_link_libraries(${name} PRIVATE ${T_LIBS} PkgConfig::CMOCKA)
  usv_warnings(${name})
  add_test(NAME ${name} COMMAND ${name})
  set(_labels unit)
  if(T_TSAN)
    list(APPEND _labels tsan)
    add_dependencies(usv_tsan_tests ${name})
  endif()
  set_tests_properties(${name} PROPERTIES LABELS "${_labels}"
    ENVIRONMENT "USV_SHARED_DIR=${USV_SHARED_DIR};USV_SOURCE_DIR=${CMAKE_SOURCE_DIR};USV_BINARY_DIR=${CMAKE_BINARY_DIR}")
endfunction()

# usv_integration_test(<name> COMMAND ...): a ctest integration test (label
# "integration"). In the USV_SANITIZE build the tests named in
# USV_ASAN_INTEGRATION_TESTS (tests/CMakeLists.txt) also get the label "asan":
# scripts/test.sh runs those against the sanitized programs.
function(usv_integration_test name)
  cmake_parse_arguments(T "" "TIMEOUT" "COMMAND" ${ARGN})
  if(NOT T_TIMEOUT)
    set(T_TIMEOUT 600)
  endif()
  set(_labels integration)
  if(USV_SANITIZE AND name IN_LIST USV_ASAN_INTEGRATION_TESTS)
    list(APPEND _labels asan)
  endif()
  add_test(NAME ${name} COMMAND ${T_COMMAND})
  set_tests_properties(${name} PROPERTIES LABELS "${_labels}" TIMEOUT ${T_TIMEOUT}
    ENVIRONMENT "USV_SHARED_DIR=${USV_SHARED_DIR};USV_SOURCE_DIR=${CMAKE_SOURCE_DIR};USV_BINARY_DIR=${CMAKE_BINARY_DIR};USVIEW=$<TARGET_FILE:usview>;USVIEWD=$<TARGET_FILE:usviewd>")
endfunction()
