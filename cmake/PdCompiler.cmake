# Warnings, ccache and sanitizers. Our targets call pd_strict(target) to get -Werror.
find_program(CCACHE_PROGRAM ccache)
if(CCACHE_PROGRAM)
  set(CMAKE_C_COMPILER_LAUNCHER ${CCACHE_PROGRAM})
  set(CMAKE_CXX_COMPILER_LAUNCHER ${CCACHE_PROGRAM})
  set(CMAKE_CUDA_COMPILER_LAUNCHER ${CCACHE_PROGRAM})
endif()

add_compile_definitions(SPDLOG_ACTIVE_LEVEL=SPDLOG_LEVEL_TRACE SPDLOG_FMT_EXTERNAL)

if(PD_SANITIZE)
  string(REPLACE "," ";" _san_list "${PD_SANITIZE}")
  foreach(s IN LISTS _san_list)
    if(NOT s MATCHES "^(address|undefined|thread)$")
      message(FATAL_ERROR "PD_SANITIZE: unknown sanitizer '${s}' (use address, undefined, thread)")
    endif()
  endforeach()
  set(_san_flags "-fsanitize=${PD_SANITIZE}" -fno-omit-frame-pointer -fno-sanitize-recover=all)
  add_compile_options("$<$<COMPILE_LANGUAGE:CXX,C>:${_san_flags}>")
  add_link_options(${_san_flags})
endif()

function(pd_strict target)
  target_compile_options(${target} PRIVATE
    $<$<COMPILE_LANGUAGE:CXX>:-Wall -Wextra -Werror -Wno-unused-parameter>)
  # GCC 12 at -O3 (Release) reports -Wrestrict on std::string concatenation inside libstdc++
  # (GCC bug 105329, a false positive); keep it a warning so Release builds do not fail.
  if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
    target_compile_options(${target} PRIVATE $<$<COMPILE_LANGUAGE:CXX>:-Wno-error=restrict>)
  endif()
endfunction()
