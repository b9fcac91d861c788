from bayesphys.examples.population_response import main

main()
