module github.com/polls-tenants/polls/agent

go 1.26
