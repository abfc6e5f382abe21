# Reading the kernels' tile tables (constexpr arrays of brace-enclosed rows in a header) for the instance generators.
#
# flashsci_table_rows(<out_var> <header> <array>)
#   Sets <out_var> to the rows of `<array>[] = { {...}, {...}, ... };` in <header>, each with its spaces removed and
#   its fields separated by "|" (so that a field such as Family::small keeps its colons).

include_guard(GLOBAL)

function(flashsci_table_rows out_var header array)
  file(READ "${header}" text)
  string(FIND "${text}" "${array}[] = {" begin)
  if(begin EQUAL -1)
    message(FATAL_ERROR "${header}: no \"${array}[] = {\"")
  endif()
  string(SUBSTRING "${text}" ${begin} -1 text)
  string(FIND "${text}" "};" end)
  string(SUBSTRING "${text}" 0 ${end} text)
  string(REGEX MATCHALL "{[^{}]*}" rows "${text}")
  set(result "")
  foreach(row IN LISTS rows)
    string(REGEX REPLACE "[{} \t\r\n]" "" row "${row}")
    string(REPLACE "," "|" row "${row}")
    list(APPEND result "${row}")
  endforeach()
  set(${out_var} "${result}" PARENT_SCOPE)
endfunction()
