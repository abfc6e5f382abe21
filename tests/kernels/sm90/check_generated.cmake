# Fails when COMMITTED differs from what GENERATOR prints (run with PYTHON), writing that to OUTPUT.
#   cmake -DPYTHON=python3 -DGENERATOR=gen_wgmma.py -DCOMMITTED=wgmma_ops.cuh -DOUTPUT=out.cuh -P check_generated.cmake
get_filename_component(generator_dir ${GENERATOR} DIRECTORY)
execute_process(COMMAND ${PYTHON} ${GENERATOR}
  WORKING_DIRECTORY ${generator_dir}
  OUTPUT_FILE ${OUTPUT}
  RESULT_VARIABLE status)
if(NOT status EQUAL 0)
  message(FATAL_ERROR "${GENERATOR} failed (${status})")
endif()
execute_process(COMMAND ${CMAKE_COMMAND} -E compare_files ${COMMITTED} ${OUTPUT} RESULT_VARIABLE differs)
if(differs)
  find_program(DIFF diff)
  if(DIFF)
    execute_process(COMMAND ${DIFF} -u ${COMMITTED} ${OUTPUT})
  endif()
  message(FATAL_ERROR "${COMMITTED} is not what ${GENERATOR} writes (${OUTPUT}): regenerate it and commit both")
endif()
message(STATUS "${COMMITTED} matches ${GENERATOR}")
