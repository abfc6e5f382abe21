# The sm_80 engine's instances, generated from its tile tables: kernels/sm80/tiles.h (forward) and bwd_tiles.h
# (backward).
#
# flashsci_sm80_instances(<out_var> <kernel_dir> "<head_dims>" <out_dir>)
#   For each listed head-dim bucket writes into <out_dir>, from <kernel_dir>/instance.cu.in and
#   bwd_instance.cu.in, one forward .cu per element type (fp16, bf16, fp32) holding an instance per distinct
#   (block_m, block_n, warps) among the bucket's kTiles rows of that element size, and one backward .cu per element
#   type (fp16, bf16) holding an instance per kBackwardTiles row of the bucket (one per shared-memory family); sets
#   <out_var> to their paths. One file per bucket and type keeps a kernel that several families share compiled once.
#
# As a script: cmake -D FLASHSCI_SM80_KERNEL_DIR=kernels/sm80 -D FLASHSCI_SM80_OUT_DIR=<dir>
#                    [-D FLASHSCI_SM80_HEAD_DIMS="64;128"] -P cmake/sm80_instances.cmake

if(CMAKE_SCRIPT_MODE_FILE)
  cmake_minimum_required(VERSION 3.25)
endif()

set(flashsci_sm80_head_dim_buckets 64 128 256)
# element name : C++ type : bytes per element
set(flashsci_sm80_elements "bf16:__nv_bfloat16:2" "f16:__half:2" "f32:float:4")

include("${CMAKE_CURRENT_LIST_DIR}/tile_tables.cmake")

function(flashsci_sm80_instances out_var kernel_dir head_dims out_dir)
  foreach(head_dim IN LISTS head_dims)
    if(NOT head_dim IN_LIST flashsci_sm80_head_dim_buckets)
      message(FATAL_ERROR "FLASHSCI_SM80_HEAD_DIMS: ${head_dim} is not one of 64, 128, 256")
    endif()
  endforeach()
  flashsci_table_rows(forward_rows "${kernel_dir}/tiles.h" kTiles)
  flashsci_table_rows(backward_rows "${kernel_dir}/bwd_tiles.h" kBackwardTiles)
  set(files "")
  foreach(FLASHSCI_SM80_HEAD_DIM IN LISTS head_dims)
    foreach(element IN LISTS flashsci_sm80_elements)
      string(REPLACE ":" ";" element "${element}")
      list(GET element 0 element_name)
      list(GET element 1 FLASHSCI_SM80_ELEMENT)
      list(GET element 2 element_bytes)
      # forward: {head_dim, family, element_bytes, block_m, block_n, warps}
      set(tiles "")
      foreach(row IN LISTS forward_rows)
        string(REPLACE "|" ";" fields "${row}")
        list(LENGTH fields count)
        if(NOT count EQUAL 6)
          message(FATAL_ERROR "${kernel_dir}/tiles.h: cannot read the kTiles row {${row}}")
        endif()
        list(GET fields 0 head_dim)
        list(GET fields 2 bytes)
        if(head_dim EQUAL FLASHSCI_SM80_HEAD_DIM AND bytes EQUAL element_bytes)
          list(SUBLIST fields 3 3 shape)
          string(REPLACE ";" ", " shape "${shape}")
          list(APPEND tiles "${shape}")
        endif()
      endforeach()
      list(REMOVE_DUPLICATES tiles)
      if(NOT tiles)
        message(FATAL_ERROR "${kernel_dir}/tiles.h: no row for head_dim ${FLASHSCI_SM80_HEAD_DIM}, ${element_bytes}-byte elements")
      endif()
      set(FLASHSCI_SM80_INSTANCES "")
      foreach(shape IN LISTS tiles)
        string(APPEND FLASHSCI_SM80_INSTANCES
               "FLASHSCI_SM80_TILE(, ${FLASHSCI_SM80_ELEMENT}, ${FLASHSCI_SM80_HEAD_DIM}, ${shape})\n")
      endforeach()
      set(name "sm80_hd${FLASHSCI_SM80_HEAD_DIM}_${element_name}")
      configure_file("${kernel_dir}/instance.cu.in" "${out_dir}/${name}.cu" @ONLY)
      list(APPEND files "${out_dir}/${name}.cu")
      # backward (fp16/bf16): {head_dim, family, block_m, block_n, double_buffer, warps...}
      if(element_bytes EQUAL 2)
        set(FLASHSCI_SM80_INSTANCES "")
        foreach(row IN LISTS backward_rows)
          string(REPLACE "|" ";" fields "${row}")
          list(GET fields 0 head_dim)
          list(GET fields 1 family)
          if(NOT family MATCHES "^Family::[a-z]+$")
            message(FATAL_ERROR "${kernel_dir}/bwd_tiles.h: cannot read the kBackwardTiles row {${row}}")
          endif()
          if(head_dim EQUAL FLASHSCI_SM80_HEAD_DIM)
            string(APPEND FLASHSCI_SM80_INSTANCES
                   "FLASHSCI_SM80_BWD_TILE(, ${FLASHSCI_SM80_ELEMENT}, ${FLASHSCI_SM80_HEAD_DIM}, ${family})\n")
          endif()
        endforeach()
        set(name "sm80_bwd_hd${FLASHSCI_SM80_HEAD_DIM}_${element_name}")
        configure_file("${kernel_dir}/bwd_instance.cu.in" "${out_dir}/${name}.cu" @ONLY)
        list(APPEND files "${out_dir}/${name}.cu")
      endif()
    endforeach()
  endforeach()
  set(${out_var} "${files}" PARENT_SCOPE)
endfunction()

if(CMAKE_SCRIPT_MODE_FILE STREQUAL CMAKE_CURRENT_LIST_FILE)
  if(NOT DEFINED FLASHSCI_SM80_HEAD_DIMS)
    set(FLASHSCI_SM80_HEAD_DIMS ${flashsci_sm80_head_dim_buckets})
  endif()
  flashsci_sm80_instances(files "${FLASHSCI_SM80_KERNEL_DIR}" "${FLASHSCI_SM80_HEAD_DIMS}" "${FLASHSCI_SM80_OUT_DIR}")
endif()
